"""Records on the ledger and their canonical encoding, plus the argument checks every function shares.

Every value the contract stores or returns is RFC 8785 canonical JSON: two peers that run the same
transaction must produce byte-identical write sets or the endorsements do not match, and audit tools hash
these bytes. Inputs are parsed strictly (no duplicate object keys, no NaN/Infinity) because a lenient parser
could read a signed message differently from the canonical form the device signed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import rfc8785

from chaincode.errors import ChaincodeError
from chaincode.periods import format_timestamp, parse_period

# Contract states (PROPOSED -> ACTIVE -> ENDED) and invoice states (see docs/chaincode.md).
PROPOSED, ACTIVE, ENDED = "PROPOSED", "ACTIVE", "ENDED"
ISSUED, POSTED, PARTIALLY_PAID, SETTLED = "ISSUED", "POSTED", "PARTIALLY_PAID", "SETTLED"
DISPUTED, CREDITED = "DISPUTED", "CREDITED"
CLOSED, OPEN = "CLOSED", "OPEN"

# ASCII digits only (`\d` would admit other scripts' digits) and fullmatch (`$` admits a trailing newline)
_PERIOD_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_AMOUNT_RE = re.compile(r"[0-9]{1,15}(\.[0-9]+)?")
# Identifiers become parts of composite keys: printable, no separators, bounded.
_ID_MAX = 256
# control characters (U+0000 is the composite-key separator), U+10FFFF (the range end) and lone surrogates
_BAD_ID_CHAR = re.compile("[\x00-\x1f\U0010ffff\ud800-\udfff]")


# Integers JSON numbers can carry exactly (IEEE 754 doubles), the RFC 8785 domain.
_MAX_SAFE_INT = 2**53 - 1


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def is_plain(obj: Any) -> bool:
    """True when `obj` is made only of ASCII-keyed objects, arrays, strings, safe integers, booleans and
    null: the domain where `json.dumps(sort_keys=True)` and RFC 8785 produce the same text (floats use a
    different number format, and keys outside ASCII may sort differently under UTF-16 ordering)."""
    t = type(obj)
    if t is str or t is bool or obj is None:
        return True
    if t is int:
        return -_MAX_SAFE_INT <= obj <= _MAX_SAFE_INT
    # explicit loops with the string case first: the walk covers every reading of a message, and this is
    # about twice as fast as all() over generators
    if t is dict:
        for k in obj:
            if type(k) is not str or not k.isascii():
                return False
        for v in obj.values():  # noqa: SIM110 - the loop is the point (no generator frame per value)
            if type(v) is not str and not is_plain(v):
                return False
        return True
    if t is list:
        for v in obj:  # noqa: SIM110
            if type(v) is not str and not is_plain(v):
                return False
        return True
    return False


def canonical(obj: Any, *, plain: bool | None = None) -> bytes:
    """RFC 8785 canonical JSON bytes (what is stored, returned, hashed and signed).

    Values in the plain domain (everything the contract itself builds: strings, counts, objects) take
    orjson with sorted keys (falling back to the stdlib C encoder), which emit exactly the RFC 8785 text
    there and are many times faster than the reference implementation (orjson's string escapes equal the
    stdlib's for every code point; `tests/unit/test_perf_equivalence.py` checks all of them); anything
    else (floats, non-ASCII keys) goes through `rfc8785`. A property
    test holds the two to the same bytes. `plain`: the caller already knows `is_plain(obj)` (or of a
    superset of it), to spare a second walk over a large message.
    """
    if plain if plain is not None else is_plain(obj):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate or nesting deeper than orjson goes: the C encoder decides
            pass
        try:
            return _ENCODER.encode(obj).encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: not representable in UTF-8
            raise ChaincodeError("invalid_argument", "value has invalid Unicode (a lone surrogate)") from exc
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:  # e.g. an integer beyond 2^53 or a NaN
        raise ChaincodeError("invalid_argument", f"value cannot be canonicalised: {exc}") from exc


def canonical_flat(record: dict[str, str]) -> bytes:
    """`canonical` for a flat record of ASCII keys and string values that the contract built itself from
    checked input (a reading): the per-reading hot path, so the domain check is the caller's promise."""
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        pass
    try:
        return _ENCODER.encode(record).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ChaincodeError("invalid_argument", "value has invalid Unicode (a lone surrogate)") from exc


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; the name of a duplicate is only looked for when there is one
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate object key {key!r}")
            seen.add(key)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str) -> Any:
    """Strict JSON parse (duplicate keys and NaN/Infinity refused); raises ValueError."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8")
    return json.loads(data, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def load_record(value: bytes) -> dict[str, Any]:
    """Decode a value this contract stored (always a canonical JSON object)."""
    return json.loads(value)


def parse_argument(args: Sequence[bytes | str]) -> dict[str, Any]:
    """The single JSON-object argument every function takes."""
    if len(args) != 1:
        raise ChaincodeError("invalid_argument", f"expected exactly one JSON argument, got {len(args)}")
    try:
        body = loads(args[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChaincodeError("invalid_argument", f"argument is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ChaincodeError("invalid_argument", "argument must be a JSON object")
    return body


# --- field checks (all raise invalid_argument with the field's name) -----------------------------------


def check_id(value: Any, field: str) -> str:
    """An identifier that can be a composite-key attribute."""
    if not isinstance(value, str) or not value or len(value) > _ID_MAX:
        raise ChaincodeError(
            "invalid_argument", f"{field} must be a non-empty string of at most {_ID_MAX}", field=field
        )
    if _BAD_ID_CHAR.search(value):
        raise ChaincodeError(
            "invalid_argument", f"{field} contains control characters or invalid Unicode", field=field
        )
    return value


def require_id(body: Mapping[str, Any], field: str) -> str:
    return check_id(body.get(field), field)


def require_str(body: Mapping[str, Any], field: str, *, allow_empty: bool = False) -> str:
    value = body.get(field)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ChaincodeError("invalid_argument", f"{field} must be a non-empty string", field=field)
    return value


def optional_str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChaincodeError("invalid_argument", f"{field} must be a string", field=field)
    return value


def require_period(body: Mapping[str, Any], field: str = "period") -> str:
    value = body.get(field)
    if not isinstance(value, str) or not _PERIOD_RE.fullmatch(value):
        raise ChaincodeError("invalid_argument", f"{field} must be YYYY-MM", field=field)
    try:
        parse_period(value)  # the year range the period arithmetic supports
    except ValueError as exc:
        raise ChaincodeError("invalid_argument", f"{field}: {exc}", field=field) from exc
    return value


def parse_amount(value: Any, field: str, exponent: int) -> Decimal:
    """A positive money amount as a plain decimal string with at most `exponent` decimals."""
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value):
        raise ChaincodeError("invalid_argument", f"{field} must be a positive decimal string", field=field)
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees a number
        raise ChaincodeError("invalid_argument", f"{field} is not a number", field=field) from exc
    if amount <= 0:
        raise ChaincodeError("invalid_argument", f"{field} must be positive", field=field)
    # checked on the text, not with quantize: Decimal arithmetic would use the thread's context
    if len(value.partition(".")[2].rstrip("0")) > exponent:
        raise ChaincodeError(
            "invalid_argument",
            f"{field} has more decimals than the currency allows ({exponent})",
            field=field,
        )
    return amount


def format_ts(ts: dt.datetime) -> str:
    """The tx timestamp as stored: the project's one canonical spelling of an instant
    (`periods.format_timestamp`: UTC, `Z`, six fraction digits only when non-zero)."""
    return format_timestamp(ts)


def history_entry(status: str, tx_id: str, at: dt.datetime) -> dict[str, str]:
    return {"status": status, "tx_id": tx_id, "at": format_ts(at)}


def parties(contract: Mapping[str, Any]) -> tuple[str, str]:
    return contract["provider"], contract["customer"]


def require_party(creator: str, contract: Mapping[str, Any], *, what: str) -> None:
    """Only the provider or the customer org of `contract` may do `what`."""
    if creator not in parties(contract):
        raise ChaincodeError(
            "forbidden",
            f"{creator} is neither provider nor customer of {contract['id']}: cannot {what}",
            msp_id=creator,
        )
