"""A device's usage message at the edge: its schema, the bytes its signature covers, and the digest that
makes two messages the same message. The chaincode checks the signature again with the same code
(chaincode.signature), so the edge and the ledger cannot disagree."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from pydantic import BaseModel, ConfigDict, Field

from chaincode.errors import ChaincodeError
from chaincode.model import canonical as chaincode_canonical
from chaincode.signature import verify_message, verify_signed_bytes


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    metric: str = Field(min_length=1, max_length=100)
    quantity: str = Field(min_length=1, max_length=40)
    timestamp: str = Field(min_length=1, max_length=40)
    unit_price: str | None = Field(default=None, max_length=40)


class UsageMessage(BaseModel):
    """A device's signed usage message (API.md). The signature covers the RFC 8785 canonical JSON of the
    message as sent, without `signature`: verification uses the raw object, never this model's dump."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    readings: list[Reading] = Field(min_length=1)
    signature: str = Field(min_length=1, max_length=200)


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes: the chaincode's encoder (orjson where that is the same text, `rfc8785` elsewhere),
    so the edge, the digest and the ledger agree byte for byte."""
    try:
        return chaincode_canonical(value)
    except ChaincodeError:  # outside what the chaincode accepts: the reference implementation decides
        return rfc8785.dumps(value)


def verify_message_signature(raw: dict[str, Any], public_key_pem: str) -> bool:
    """The chaincode's own check (chaincode.signature), so the edge and the ledger cannot disagree."""
    try:
        verify_message(raw, public_key_pem)
    except ChaincodeError:
        return False
    return True


def signed_bytes(raw: dict[str, Any]) -> bytes:
    """The canonical message without its signature: what the device signed, and (hashed) the digest."""
    return canonical({k: v for k, v in raw.items() if k != "signature"})


def digest(raw: dict[str, Any]) -> str:
    """What makes two messages the same message: everything but the (randomised) signature."""
    return hashlib.sha256(signed_bytes(raw)).hexdigest()


def signature_ok(signature: Any, signed: bytes, public_key_pem: str) -> bool:
    """`verify_message_signature` over bytes already encoded (the chaincode's own check)."""
    try:
        verify_signed_bytes(signature, signed, public_key_pem)
    except ChaincodeError:
        return False
    return True
