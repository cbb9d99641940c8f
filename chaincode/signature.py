"""Device signatures on usage messages: ECDSA P-256 / SHA-256, DER, base64, over RFC 8785 JSON.

The chaincode verifies every message again even though the hub already did: the ledger must not trust the
hub, and an auditor re-running the check offline must reach the same verdict from the stored message alone.
Malformed keys and signatures are refusals with a stable code, never a crash.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaincode.errors import ChaincodeError
from chaincode.model import canonical

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def signed_bytes(message: Mapping[str, Any], *, plain: bool | None = None) -> bytes:
    """The bytes a device signs: canonical JSON of the message without its `signature` field."""
    return canonical({k: v for k, v in message.items() if k != "signature"}, plain=plain)


@lru_cache(maxsize=1024)
def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """A P-256 SubjectPublicKeyInfo PEM, else `bad_public_key`. Cached: one device sends many messages."""
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise ChaincodeError(
            "bad_public_key", f"public key is not a PEM SubjectPublicKeyInfo: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ChaincodeError("bad_public_key", "public key must be an EC key on P-256")
    return key


def check_public_key(pem: Any) -> str:
    if not isinstance(pem, str) or "-----BEGIN PUBLIC KEY-----" not in pem:
        raise ChaincodeError("bad_public_key", "public_key must be a SubjectPublicKeyInfo PEM string")
    load_public_key(pem)
    return pem


def verify_message(message: Mapping[str, Any], public_key_pem: str, *, plain: bool | None = None) -> None:
    """Raise `bad_signature` unless `message["signature"]` is the device's signature of the message."""
    verify_signed_bytes(message.get("signature"), lambda: signed_bytes(message, plain=plain), public_key_pem)


def verify_signed_bytes(sig_text: Any, data: bytes | Callable[[], bytes], public_key_pem: str) -> None:
    """`verify_message` when the caller already holds the signed bytes (the hub's edge hashes the same
    canonical text for its idempotency digest, so it encodes a message once). `data` may be a callable,
    evaluated only once the signature is well-formed, so refusals come in the same order either way."""
    if not isinstance(sig_text, str) or not sig_text:
        raise ChaincodeError("bad_signature", "message has no signature")
    try:
        der = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ChaincodeError("bad_signature", "signature is not valid base64") from exc
    key = load_public_key(public_key_pem)
    try:
        key.verify(der, data() if callable(data) else data, _ECDSA_SHA256)
    except InvalidSignature as exc:
        raise ChaincodeError("bad_signature", "signature does not verify with the device's key") from exc
    except ValueError as exc:  # malformed DER
        raise ChaincodeError("bad_signature", f"signature is not a DER ECDSA signature: {exc}") from exc
