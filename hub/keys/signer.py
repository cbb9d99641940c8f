"""The `Signer`: every signature the hub makes goes through one of these.

Fabric transactions, embedded-ledger endorsements and invoice documents are all signed as ECDSA P-256
over a SHA-256 digest, DER-encoded with a low S value (Fabric rejects high-S signatures as malleable).
Production signers keep the key in an HSM (`hub.keys.pkcs11`); `SoftwareSigner` keeps it in memory and is
for unit tests and throwaway demos only.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

# Order of the P-256 group.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@runtime_checkable
class Signer(Protocol):
    @property
    def key_id(self) -> str:
        """Fabric SKI: hex SHA-256 of the uncompressed public point."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def certificate(self) -> x509.Certificate | None: ...

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte SHA-256 digest; DER, low-S."""
        ...


@runtime_checkable
class RotatingSigner(Protocol):
    """A signer that follows key rotation (a key manager's `ManagedSigner`)."""

    def pinned(self) -> Signer:
        """The current key version, fixed."""
        ...


def pinned(signer: Signer) -> Signer:
    """One fixed key version of `signer` (a rotating signer's current version, else the signer itself), so
    the key id, certificate and signature of one use belong together."""
    return signer.pinned() if isinstance(signer, RotatingSigner) else signer


def ski(public_key: ec.EllipticCurvePublicKey) -> str:
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha256(point).hexdigest()


def to_low_s(r: int, s: int) -> bytes:
    if s > P256_N // 2:
        s = P256_N - s
    return encode_dss_signature(r, s)


def normalize_der(signature: bytes) -> bytes:
    r, s = decode_dss_signature(signature)
    return to_low_s(r, s)


def raw_to_der(raw: bytes) -> bytes:
    """PKCS#11 returns r‖s (32 bytes each); Fabric and X.509 want DER."""
    if len(raw) != 64:
        raise ValueError("expected 64-byte raw ECDSA P-256 signature")
    return to_low_s(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def is_low_s(signature: bytes) -> bool:
    _, s = decode_dss_signature(signature)
    return s <= P256_N // 2


def sign_bytes(signer: Signer, data: bytes) -> bytes:
    return signer.sign(hashlib.sha256(data).digest())


def verify_bytes(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


class SoftwareSigner:
    """An in-memory P-256 key. For unit tests and throwaway demos only: the key lives in process memory."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        certificate: x509.Certificate | None = None,
    ) -> None:
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())
        self._cert = certificate
        self._ski = ski(self._key.public_key())

    @property
    def key_id(self) -> str:
        return self._ski

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def certificate(self) -> x509.Certificate | None:
        return self._cert

    def set_certificate(self, certificate: x509.Certificate) -> None:
        self._cert = certificate

    def sign(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("sign() takes a SHA-256 digest")
        der = self._key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return normalize_der(der)
