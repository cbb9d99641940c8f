"""The readings digest: a multiset hash of the readings behind an aggregate (ADR 0003).

Each reading hashes to SHA-256 of the RFC 8785 canonical JSON of its identifying fields; a set of readings
is the sum of those values mod 2^256, so the digest is the same whatever order the readings arrived in and
however they were split into transactions. An auditor recomputes it from the signed usage messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

__all__ = ["DIGEST_MODULUS", "combine_digests", "digest_hex", "parse_digest", "reading_hash"]

DIGEST_MODULUS = 2**256
_HASHED_FIELDS = ("id", "device_id", "metric", "quantity", "timestamp")


def reading_hash(reading: Mapping[str, Any]) -> int:
    """SHA-256 (as an int) of the RFC 8785 canonical JSON of the reading's identifying fields.

    Hashed: "id", "device_id", "metric", "quantity", "timestamp" and, when present and not null,
    "unit_price" -- exactly as the device sent them (strings), so an auditor can recompute it from the
    signed usage message. Other fields of a stored reading record (tx_id, period, ...) are ignored.
    """
    body: dict[str, Any] = {}
    for key in _HASHED_FIELDS:
        if key not in reading:
            raise ValueError(f"reading lacks {key!r}")
        body[key] = reading[key]
    if reading.get("unit_price") is not None:
        body["unit_price"] = reading["unit_price"]
    return int.from_bytes(hashlib.sha256(rfc8785.dumps(body)).digest(), "big")


def combine_digests(values: Iterable[int]) -> int:
    """Multiset hash: the sum of the values mod 2^256 (order- and grouping-independent)."""
    total = 0
    for v in values:
        total = (total + v) % DIGEST_MODULUS
    return total


def digest_hex(value: int) -> str:
    """64 lowercase hex characters."""
    if not 0 <= value < DIGEST_MODULUS:
        raise ValueError("digest out of range")
    return format(value, "064x")


def parse_digest(text: object) -> int:
    """Inverse of `digest_hex`."""
    if not isinstance(text, str) or len(text) != 64 or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError("digest must be 64 lowercase hex characters")
    return int(text, 16)
