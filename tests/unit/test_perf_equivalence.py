"""The performance work changed how, never what: each fast path against the code it replaced.

* `canonical` / `canonical_flat` now try orjson first: the same bytes as the stdlib C encoder for every
  Unicode scalar value and for ASCII key order, and lone surrogates still refused with the same code;
* `batch_aggregate` folds per-metric statistics in place: the same aggregate (to the byte of its JSON)
  as the reference fold through `MetricStats.merged` it replaced, on adversarial readings (ties of value
  and instant, equal values with different exponents, mixed UTC offsets, zeros);
* the strict JSON parser still names a duplicate key;
* `parse_timestamp` hands the common shape to the C parser: the same instant and offset, or the same
  refusal message, as the explicit parser for every shape the pattern admits.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, localcontext

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode.errors import ChaincodeError
from chaincode.model import canonical, canonical_flat, is_plain, loads
from chaincode.money import EXACT, format_decimal
from chaincode.periods import _RFC3339, _parse_match, parse_timestamp
from chaincode.rating import BatchAggregate, MetricStats, ReadingIn, batch_aggregate, period_of
from tests.helpers.rating import simple_plan

pytestmark = pytest.mark.unit

_STDLIB = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_SCALARS = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def test_every_code_point_encodes_as_the_stdlib_encoder_does() -> None:
    # one string per code point in a list, and all of them as values of a flat record
    assert canonical(_SCALARS, plain=True) == _STDLIB.encode(_SCALARS).encode("utf-8")
    record = {f"k{i:07d}": s for i, s in enumerate(_SCALARS[::7])}
    assert canonical_flat(record) == _STDLIB.encode(record).encode("utf-8")


def test_control_and_escape_characters_are_rfc8785() -> None:
    text = "".join(chr(c) for c in range(0x80)) + "\u2028\u2029\ufeff\U0001f600"
    assert canonical({"t": text}) == rfc8785.dumps({"t": text})
    assert canonical_flat({"t": text}) == rfc8785.dumps({"t": text})


def test_ascii_keys_sort_by_code_point() -> None:
    keys = [chr(c) for c in range(0x20, 0x7F)] + ["a", "aa", "a_", "A", "Z", "_", "~"]
    obj = {k + "x": i for i, k in enumerate(keys)}
    assert canonical(obj) == rfc8785.dumps(obj) == _STDLIB.encode(obj).encode("utf-8")


def test_lone_surrogates_are_still_refused() -> None:
    with pytest.raises(ChaincodeError) as exc:
        canonical({"t": "a\ud800"})
    assert exc.value.code == "invalid_argument"
    with pytest.raises(ChaincodeError):
        canonical_flat({"t": "\udfff"})


def test_nesting_beyond_orjson_falls_back_to_the_stdlib_encoder() -> None:
    deep: object = "leaf"
    for _ in range(300):  # orjson stops at 254 levels
        deep = [deep]
    assert canonical(deep, plain=True) == _STDLIB.encode(deep).encode("utf-8")


def test_duplicate_keys_still_named() -> None:
    with pytest.raises(ValueError, match="duplicate object key 'b'"):
        loads('{"a": 1, "b": 2, "c": {"x": 1}, "b": 3}')
    assert loads('{"a": {"b": 1, "c": [1, {"d": null}]}}') == {"a": {"b": 1, "c": [1, {"d": None}]}}


# --- batch_aggregate against the fold it replaced ------------------------------------------------------


def _reference(plan: object, readings: list[ReadingIn]) -> BatchAggregate:
    """The previous loop: one MetricStats per reading, merged into the running one."""
    agg = BatchAggregate()
    digests = []
    with localcontext(EXACT):
        for r in readings:
            period = period_of(r.timestamp, plan.timezone)  # type: ignore[attr-defined]
            agg.period = agg.period or period
            assert period == agg.period
            digests.append(r.digest or 0)
            q = r.quantity
            stats = MetricStats(sum=q, max=q, count=1, latest=(r.timestamp, r.id, q))
            prev = agg.metrics.get(r.metric)
            agg.metrics[r.metric] = stats if prev is None else prev.merged(stats)
            agg.readings += 1
    agg.digest = sum(digests) % 2**256
    for stats in agg.metrics.values():
        ts, rid, q = stats.latest
        stats.latest = (ts.astimezone(dt.UTC), rid, q)
    return agg


_QUANTITIES = st.sampled_from(["0", "0.0", "0.00", "1", "1.0", "1.50", "1.5", "2", "2.000", "7.25", "10"])
_OFFSETS = st.sampled_from([0, 60, -300, 330, 120])


@st.composite
def _readings(draw: st.DrawFn) -> list[ReadingIn]:
    n = draw(st.integers(min_value=1, max_value=40))
    out = []
    for i in range(n):
        # few distinct instants, so equal instants (in different offsets) are common
        minute = draw(st.integers(min_value=0, max_value=5))
        base = dt.datetime(2026, 11, 10, 12, minute, tzinfo=dt.UTC)
        offset = dt.timezone(dt.timedelta(minutes=draw(_OFFSETS)))
        metric = draw(st.sampled_from(["m", "n"]))
        q = Decimal(draw(_QUANTITIES))
        rid = f"r{draw(st.integers(min_value=0, max_value=9))}-{i:03d}"
        out.append(ReadingIn(rid, metric, q, base.astimezone(offset), None, i * 7919 + 1))
    return out


@settings(max_examples=120, deadline=None)
@given(_readings())
def test_batch_aggregate_equals_the_reference_fold(readings: list[ReadingIn]) -> None:
    plan = simple_plan(
        [{"id": "c", "model": "per_unit", "metric": "m", "unit_price": "1.00"}],
        metrics={"m": "sum", "n": "max"},
        timezone="UTC",
    )
    fast, slow = batch_aggregate(plan, readings), _reference(plan, readings)
    assert rfc8785.dumps(fast.to_json()) == rfc8785.dumps(slow.to_json())
    for name, stats in slow.metrics.items():  # the Decimal representations too, not only their text
        assert str(fast.metrics[name].sum) == str(stats.sum)
        assert str(fast.metrics[name].max) == str(stats.max)
        assert format_decimal(fast.metrics[name].latest[2]) == format_decimal(stats.latest[2])


def test_batch_aggregate_still_refuses_mixed_periods_and_naive_instants() -> None:
    charge = {"id": "c", "model": "per_unit", "metric": "m", "unit_price": "1.00"}
    plan = simple_plan([charge], timezone="UTC")
    a = ReadingIn("a", "m", Decimal("1"), dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC))
    b = ReadingIn("b", "m", Decimal("1"), dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match="is in 2026-12, the batch in 2026-11"):
        batch_aggregate(plan, [a, b])
    naive = ReadingIn("c", "m", Decimal("1"), dt.datetime(2026, 11, 30, 12, 0))
    with pytest.raises(ValueError):
        batch_aggregate(plan, [a, naive])


# --- parse_timestamp's fast path against the explicit parser -------------------------------------------


def _explicit(text: str) -> dt.datetime | str:
    match = _RFC3339.fullmatch(text)
    assert match is not None
    try:
        return _parse_match(text, match)
    except ValueError as exc:
        return str(exc)


def _fast(text: str) -> dt.datetime | str:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        return str(exc)


_D2 = st.integers(min_value=0, max_value=99).map(lambda n: f"{n:02d}")


@st.composite
def _rfc3339ish(draw: st.DrawFn) -> str:
    """Strings the pattern accepts, in and out of every range (month 13, day 31 of April, hour 24,
    second 60, offset +24:00 or +01:60, year 1899/9999), with and without fractions, any offset form."""
    year = draw(st.sampled_from(["1899", "1900", "2026", "2024", "9998", "9999", "0000"]))
    date = f"{year}-{draw(_D2)}-{draw(_D2)}"
    sep = draw(st.sampled_from(["T", "t"]))
    clock = f"{draw(_D2)}:{draw(_D2)}:{draw(_D2)}"
    frac = draw(st.sampled_from(["", ".5", ".000000", ".123456789", ".1234567"]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+23:59", "+24:00",
                                   "+01:60", "-12:45", "+14:00"]))
    return f"{date}{sep}{clock}{frac}{offset}"


@settings(max_examples=600, deadline=None)
@given(_rfc3339ish())
def test_parse_timestamp_fast_path_is_the_explicit_parser(text: str) -> None:
    fast, slow = _fast(text), _explicit(text)
    assert type(fast) is type(slow) and fast == slow
    if isinstance(fast, dt.datetime):
        assert isinstance(slow, dt.datetime)
        assert fast.utcoffset() == slow.utcoffset() and fast.isoformat() == slow.isoformat()


def test_parse_timestamp_common_shapes() -> None:
    for text in ("2026-11-03T09:15:00+01:00", "2026-11-03T09:15:00Z", "2026-02-29T00:00:00Z",
                 "2024-02-29T23:59:59-00:00", "2026-11-03T09:15:60Z", "2026-04-31T00:00:00Z"):
        assert _fast(text) == _explicit(text)


# --- is_plain's loops against the all()-over-generators version it replaced ----------------------------


def _is_plain_reference(obj: object) -> bool:
    t = type(obj)
    if t is str or t is bool or obj is None:
        return True
    if t is int:
        return -(2**53 - 1) <= obj <= 2**53 - 1  # type: ignore[operator]
    if t is dict:
        return all(type(k) is str and k.isascii() for k in obj) and all(  # type: ignore[attr-defined]
            _is_plain_reference(v) for v in obj.values()  # type: ignore[attr-defined]
        )
    if t is list:
        return all(_is_plain_reference(v) for v in obj)  # type: ignore[attr-defined]
    return False


_any_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False) | st.text(max_size=4) | st.binary(max_size=2),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=3) | st.integers(max_value=3), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_any_json)
def test_is_plain_equals_the_reference(value: object) -> None:
    assert is_plain(value) is _is_plain_reference(value)
