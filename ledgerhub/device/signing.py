"""Signing a usage message exactly as API.md fixes it: the RFC 8785 canonical JSON of the message without
its `signature` field, ECDSA P-256 over SHA-256, the DER signature in base64.

Two key holders: a PEM file (`PemSigner`) and a PKCS#11 token (`Pkcs11Signer`, e.g. SoftHSM2 or the
device's secure element), whose private key never leaves the token. Both only need `sign(data) -> DER`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any, Protocol

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class MessageSigner(Protocol):
    def sign(self, data: bytes) -> bytes:
        """DER ECDSA P-256 / SHA-256 signature of `data`."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...


def signed_bytes(message: dict[str, Any]) -> bytes:
    """What the signature covers: the canonical JSON of the message without its `signature`."""
    return rfc8785.dumps({k: v for k, v in message.items() if k != "signature"})


def sign_message(signer: MessageSigner, message: dict[str, Any]) -> dict[str, Any]:
    """The message with its `signature` (base64 of the DER signature)."""
    body = {k: v for k, v in message.items() if k != "signature"}
    return {**body, "signature": base64.b64encode(signer.sign(signed_bytes(body))).decode()}


def public_key_pem(signer: MessageSigner) -> str:
    """The SubjectPublicKeyInfo PEM to register the asset with (`POST /v1/assets`)."""
    return signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class PemSigner:
    """A P-256 private key from a PEM file (PKCS#8 or SEC1, optionally encrypted with `password`)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the device key must be an EC P-256 (secp256r1) private key")
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path, password: bytes | None = None) -> PemSigner:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=password)
        return cls(key)  # type: ignore[arg-type]

    @classmethod
    def generate(cls, path: str | Path | None = None) -> PemSigner:
        """A new key; written to `path` (mode 0600) when given."""
        key = ec.generate_private_key(ec.SECP256R1())
        if path is not None:
            target = Path(path)
            target.touch(mode=0o600, exist_ok=False)
            target.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        return cls(key)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return "PemSigner(<private key>)"


class Pkcs11Signer:
    """A P-256 key on a PKCS#11 token, found by label and/or CKA_ID (hex); signs with CKM_ECDSA over the
    SHA-256 digest computed here, and returns DER (low-S). One logged-in session per signer; the PIN is
    used to log in and not kept."""

    def __init__(self, module: str, token_label: str, pin: str, *, key_label: str | None = None,
                 key_id: str | None = None) -> None:
        if key_label is None and key_id is None:
            raise ValueError("name the key: key_label or key_id")
        import pkcs11  # lazily: only devices with a token need python-pkcs11
        from pkcs11 import Attribute, ObjectClass

        self._pkcs11 = pkcs11
        self._lock = threading.Lock()
        lib = pkcs11.lib(module)
        token = lib.get_token(token_label=token_label)
        self._session = token.open(user_pin=pin)
        query: dict[Any, Any] = {}
        if key_label is not None:
            query[Attribute.LABEL] = key_label
        if key_id is not None:
            query[Attribute.ID] = bytes.fromhex(key_id)
        private = list(self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **query}))
        public = list(self._session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **query}))
        if len(private) != 1 or len(public) != 1:
            self._session.close()
            raise LookupError(f"expected one P-256 key pair on token {token_label!r} matching "
                              f"{key_label or key_id!r}, found {len(private)} private / {len(public)} public")
        self._private = private[0]
        self._public = _point_to_key(public[0][Attribute.EC_POINT])

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        with self._lock:
            raw = self._private.sign(digest, mechanism=self._pkcs11.Mechanism.ECDSA)
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        if s > P256_ORDER // 2:
            s = P256_ORDER - s
        return encode_dss_signature(r, s)

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return "Pkcs11Signer(<token key>)"


def _point_to_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT is the uncompressed point, bare or inside a DER OCTET STRING (SoftHSM2)."""
    raw = point
    if len(point) == 67 and point[:2] == b"\x04\x41":
        raw = point[2:]
    elif len(point) == 68 and point[:3] == b"\x04\x81\x41":
        raw = point[3:]
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
