"""Byte encodings of everything the embedded ledger hashes or signs.

Signed and hashed structures are canonical JSON (keys sorted, no whitespace, UTF-8) produced by orjson:
fast, deterministic for the types we put in (str, int, list, dict, None), and readable by an auditor with
any JSON tool. Binary values travel as base64 text inside JSON. A transaction envelope is a small binary
frame of the exact signed byte strings, so verification never depends on re-encoding anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

ENVELOPE_MAGIC = b"LHE1"


class DecodeError(ValueError):
    """Stored or received bytes are not what the ledger wrote."""


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, compact). Only JSON-native types are allowed."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise DecodeError(f"bad base64: {exc}") from exc


def frame(parts: Sequence[bytes]) -> bytes:
    """Length-prefixed concatenation (4-byte big-endian lengths) behind a magic number."""
    out = [ENVELOPE_MAGIC, len(parts).to_bytes(2, "big")]
    for part in parts:
        out.append(len(part).to_bytes(4, "big"))
        out.append(part)
    return b"".join(out)


def unframe(data: bytes) -> list[bytes]:
    if not data.startswith(ENVELOPE_MAGIC) or len(data) < 6:
        raise DecodeError("not an envelope frame")
    count = int.from_bytes(data[4:6], "big")
    pos = 6
    parts: list[bytes] = []
    for _ in range(count):
        if pos + 4 > len(data):
            raise DecodeError("truncated envelope frame")
        size = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if pos + size > len(data):
            raise DecodeError("truncated envelope frame")
        parts.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise DecodeError("trailing bytes after envelope frame")
    return parts


def key_bytes(key: str) -> bytes:
    """State keys are stored as UTF-8 BLOBs: composite keys contain U+0000, and BLOB order (memcmp) is
    exactly the code-point order Fabric's range queries use."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"state key is not valid Unicode: {key!r}") from exc
