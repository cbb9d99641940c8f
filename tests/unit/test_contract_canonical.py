"""chaincode.model: the fast canonical encoder is RFC 8785, byte for byte; strict argument parsing."""

from __future__ import annotations

import hashlib

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode import rating
from chaincode.errors import ChaincodeError
from chaincode.model import canonical, canonical_flat, loads
from chaincode.tx.usage import reading_digest

pytestmark = pytest.mark.unit

# JSON values, including what falls outside the fast path: floats, huge integers, non-ASCII keys
# (astral vs. high-BMP keys sort differently in UTF-16), control characters and escapes.
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)


def _reference(value: object) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return ChaincodeError


@settings(max_examples=150, deadline=None)
@given(_json)
def test_canonical_equals_rfc8785(value: object) -> None:
    expected = _reference(value)
    if expected is ChaincodeError:
        with pytest.raises(ChaincodeError):
            canonical(value)
    else:
        assert canonical(value) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "device_id", "metric", "quantity", "timestamp", "unit_price"]),
        _text,
        min_size=1,
    )
)
def test_flat_records_equal_rfc8785(record: dict[str, str]) -> None:
    assert canonical_flat(record) == rfc8785.dumps(record)


@pytest.mark.parametrize(
    "raw",
    [
        {
            "id": "r-1",
            "device_id": "d",
            "metric": "scan",
            "quantity": "1",
            "timestamp": "2026-11-03T09:15:00+01:00",
        },
        {
            "id": "Zähler-ü-€-\U0001f600",
            "device_id": "gerät",
            "metric": "kWh",
            "quantity": "0.000000000001",
            "timestamp": "2026-11-03T09:15:00.123456789Z",
            "unit_price": "0.25",
        },
        {
            "id": 'quote"back\\slash\ttab\x01',
            "device_id": "d",
            "metric": "m",
            "quantity": "0",
            "timestamp": "2026-11-03T09:15:00-05:00",
        },
    ],
)
def test_contract_reading_digest_is_ratings_reading_hash(raw: dict[str, str]) -> None:
    # chaincode.tx.usage hashes with canonical_flat for speed; it must be rating.reading_hash exactly
    assert int.from_bytes(hashlib.sha256(canonical_flat(raw)).digest(), "big") == rating.reading_hash(raw)
    assert reading_digest(raw) == rating.reading_hash(raw)


def test_lone_surrogates_are_invalid_argument() -> None:
    value = loads('{"id": "\\ud800"}')
    with pytest.raises(ChaincodeError) as info:
        canonical(value)
    assert info.value.code == "invalid_argument"
    with pytest.raises(ChaincodeError):
        canonical_flat(value)


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a": Infinity}', '{"a": -Infinity}', "[NaN]"])
def test_strict_parse(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)
