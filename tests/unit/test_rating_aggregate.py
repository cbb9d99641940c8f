"""Batch aggregates, merge and the readings digest: exactness, determinism, refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest

from chaincode.rating import (
    BatchAggregate,
    ReadingIn,
    batch_aggregate,
    combine_digests,
    digest_hex,
    merge,
    parse_digest,
    parse_timestamp,
    rate,
    reading_from_record,
    reading_hash,
)
from tests.helpers.rating import reading, simple_plan

pytestmark = pytest.mark.unit

RECORD = {
    "id": "r-000001",
    "device_id": "mri-berlin-01",
    "metric": "m",
    "quantity": "0.75",
    "timestamp": "2026-11-03T09:59:00+01:00",
}


def oracle_hash(body: dict[str, str]) -> int:
    """RFC 8785 for an object of ASCII strings is sorted keys, no whitespace: an independent oracle."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def test_reading_hash_is_sha256_of_canonical_json() -> None:
    assert reading_hash(RECORD) == oracle_hash(RECORD)
    priced = {**RECORD, "unit_price": "0.1234"}
    assert reading_hash(priced) == oracle_hash(priced) != reading_hash(RECORD)


def test_reading_hash_ignores_other_fields_and_null_unit_price() -> None:
    stored = {**RECORD, "contract_id": "c", "period": "2026-11", "tx_id": "ab", "unit_price": None}
    assert reading_hash(stored) == reading_hash(RECORD)


def test_reading_hash_uses_the_strings_as_sent() -> None:
    assert reading_hash({**RECORD, "quantity": "0.750"}) != reading_hash(RECORD)


def test_reading_hash_needs_every_field() -> None:
    for key in ("id", "device_id", "metric", "quantity", "timestamp"):
        with pytest.raises(ValueError, match=key):
            reading_hash({k: v for k, v in RECORD.items() if k != key})


def test_combine_digests_is_an_order_free_sum_mod_2_256() -> None:
    values = [reading_hash({**RECORD, "id": f"r{i}"}) for i in range(5)]
    assert combine_digests(values) == combine_digests(values[::-1]) == sum(values) % 2**256
    assert combine_digests([2**256 - 1, 2]) == 1
    assert combine_digests([]) == 0
    halves = [combine_digests(values[:2]), combine_digests(values[2:])]
    assert combine_digests(halves) == combine_digests(values)


def test_digest_hex() -> None:
    assert digest_hex(0) == "0" * 64
    assert digest_hex(255) == "0" * 62 + "ff"
    assert parse_digest(digest_hex(2**256 - 1)) == 2**256 - 1
    for bad in (-1, 2**256):
        with pytest.raises(ValueError):
            digest_hex(bad)
    for text in ("F" * 64, "0" * 63, "g" * 64, 5):
        with pytest.raises(ValueError):
            parse_digest(text)


def test_reading_from_record() -> None:
    r = reading_from_record({**RECORD, "unit_price": "0.5"})
    expected_hash = reading_hash({**RECORD, "unit_price": "0.5"})
    ts = parse_timestamp(RECORD["timestamp"])
    assert r == ReadingIn(
        "r-000001", "m", Decimal("0.75"), ts, Decimal("0.5"), expected_hash, RECORD["device_id"]
    )
    with pytest.raises(ValueError):
        reading_from_record({**RECORD, "quantity": "-1"})
    with pytest.raises(ValueError):
        reading_from_record({**RECORD, "timestamp": "2026-11-03T09:59:00"})


def test_batch_digest_combines_reading_digests() -> None:
    plan = simple_plan([{"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}])
    records = [{**RECORD, "id": f"r{i}", "timestamp": f"2026-11-0{i + 1}T10:00:00Z"}
               for i in range(4)]  # fmt: skip
    agg = batch_aggregate(plan, [reading_from_record(r) for r in records])
    assert agg.digest == sum(oracle_hash(r) for r in records) % 2**256
    assert agg.readings == 4
    assert agg.to_json()["digest"] == digest_hex(agg.digest)


def test_batch_without_digests_leaves_it_to_the_caller() -> None:
    plan = simple_plan([{"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}])
    assert batch_aggregate(plan, [reading("a", "m", "1")]).digest == 0
    mixed = [reading("a", "m", "1"), reading_from_record(RECORD)]
    with pytest.raises(ValueError, match="digest"):
        batch_aggregate(plan, mixed)


@pytest.mark.parametrize(
    ("readings", "match"),
    [
        ([reading("a", "m", "1"), reading("a", "m", "2")], "twice"),
        ([reading("a", "x", "1")], "not in the plan"),
        ([ReadingIn("a", "m", Decimal("-1"), parse_timestamp("2026-11-03T00:00:00Z"))], "non-negative"),
        ([ReadingIn("a", "m", Decimal("NaN"), parse_timestamp("2026-11-03T00:00:00Z"))], "non-negative"),
        ([reading("a", "m", "1", "2026-11-30T22:59:59Z"), reading("b", "m", "1", "2026-11-30T23:00:00Z")],
         "2026-12"),
        ([reading("d", "p", "1")], "unit_price"),
    ],
)
def test_batch_aggregate_refuses(readings: list[ReadingIn], match: str) -> None:
    plan = simple_plan(
        [{"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}, {"id": "d", "model": "dynamic",
                                                                               "metric": "p"}],
        {"m": "sum", "p": "sum"},
    )  # fmt: skip
    with pytest.raises(ValueError, match=match):
        batch_aggregate(plan, readings)


def test_aggregate_json_shape_and_round_trip() -> None:
    charge = {"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}
    plan = simple_plan([charge], {"m": "max", "n": "sum"})
    agg = batch_aggregate(plan, [
        reading("a", "m", "0.0000001", "2026-11-03T10:00:00+01:00"),
        reading("b", "m", "2.50", "2026-11-03T08:00:00Z"),
        reading("c", "n", "3", "2026-11-04T00:00:00Z"),
    ])  # fmt: skip
    body = agg.to_json()
    assert body == {
        "metrics": {
            "m": {"sum": "2.5000001", "max": "2.50", "count": 2,
                  "latest": ["2026-11-03T09:00:00Z", "a", "0.0000001"]},
            "n": {"sum": "3", "max": "3", "count": 1, "latest": ["2026-11-04T00:00:00Z", "c", "3"]},
        },
        "time_of_use": {},
        "dynamic": {},
        "readings": 3,
        "digest": "0" * 64,
        "period": "2026-11",
    }
    again = BatchAggregate.from_json(json.loads(json.dumps(body)))
    assert again.to_json() == body
    assert rate(plan, again) == rate(plan, agg)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("digest"),
        lambda b: b.update(digest="xyz"),
        lambda b: b.update(readings=-1),
        lambda b: b.update(readings=True),
        lambda b: b.update(period="2026-13"),
        lambda b: b["metrics"]["m"].update(count=0),
        lambda b: b["metrics"]["m"].update(sum=1.5),
        lambda b: b["metrics"]["m"].update(max="NaN"),
        lambda b: b["metrics"]["m"].update(latest=["2026-11-03T10:00:00", "a", "1"]),
        lambda b: b["metrics"]["m"].pop("latest"),
        lambda b: b["metrics"]["m"].update(sum="abc"),
        lambda b: b["metrics"]["m"].update(sum="-1"),
        lambda b: b["metrics"]["m"].update(latest=["2026-11-03T10:00:00Z", 7, "1"]),
        lambda b: b["metrics"]["m"].update(latest=["2026-11-03T10:00:00Z", "a"]),
        lambda b: b["metrics"]["m"].update(count=2),  # counts no longer add up to "readings"
        lambda b: b.update(readings=2),
        lambda b: b.pop("period"),
        lambda b: b.update(metrics=[]),
        lambda b: b.update(time_of_use={"t": {"windows": "12", "default": "0"}}),
        lambda b: b.update(dynamic={"d": "1e3"}),
    ],
)
def test_from_json_refuses_malformed(mutate: Any) -> None:
    plan = simple_plan([{"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}])
    body = batch_aggregate(plan, [reading("a", "m", "1")]).to_json()
    mutate(body)
    with pytest.raises(ValueError):
        BatchAggregate.from_json(body)


def test_merge_refuses_different_periods_and_accepts_empty() -> None:
    plan = simple_plan([{"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}])
    nov = batch_aggregate(plan, [reading("a", "m", "1", "2026-11-10T00:00:00Z")])
    dec = batch_aggregate(plan, [reading("b", "m", "1", "2026-12-10T00:00:00Z")])
    with pytest.raises(ValueError, match="merge"):
        merge([nov, dec])
    empty = batch_aggregate(plan, [])
    assert empty.to_json() == merge([]).to_json() == {"metrics": {}, "time_of_use": {}, "dynamic": {},
                                                       "readings": 0, "digest": "0" * 64}  # fmt: skip
    assert merge([empty, nov, empty]).to_json() == nov.to_json()


def test_merge_does_not_mutate_its_inputs() -> None:
    plan = simple_plan([{"id": "t", "model": "time_of_use", "metric": "m", "default_unit_price": "1",
                         "windows": [{"days": ["mon"], "from": "00:00", "to": "12:00", "unit_price": "2"}]}])
    a = batch_aggregate(plan, [reading("a", "m", "1", "2026-11-02T08:00:00Z")])
    b = batch_aggregate(plan, [reading("b", "m", "2", "2026-11-02T09:00:00Z")])
    before = (a.to_json(), b.to_json())
    merged = merge([a, b])
    merge([merged, a])
    assert (a.to_json(), b.to_json()) == before
    assert merged.to_json()["time_of_use"] == {"t": {"windows": ["3"], "default": "0"}}


def test_latest_is_stored_in_utc_whatever_offset_was_sent() -> None:
    charge = {"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}
    plan = simple_plan([charge], {"m": "latest"})
    a = batch_aggregate(plan, [reading("a", "m", "1", "2026-11-03T10:00:00+05:30")]).to_json()
    b = batch_aggregate(plan, [reading("a", "m", "1", "2026-11-03T04:30:00Z")]).to_json()
    assert a == b
    assert a["metrics"]["m"]["latest"] == ["2026-11-03T04:30:00Z", "a", "1"]


def _from(device: str, r: ReadingIn) -> ReadingIn:
    return dataclasses.replace(r, device_id=device)


def test_one_reading_id_from_two_devices_is_two_readings_and_latest_is_order_free() -> None:
    """Devices number their own readings (ADR 0026): the same id from two devices is two readings, and when
    both carry the same instant, `latest` is the same whatever the order or the split into batches (the
    quantity decides, as `MetricStats.merged` does); from one device it is still refused as a repeat."""
    charge = {"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1"}
    plan = simple_plan([charge], {"m": "latest"})
    a = _from("dev-a", reading("r-000001", "m", "5"))
    b = _from("dev-b", reading("r-000001", "m", "3"))
    one_way = batch_aggregate(plan, [a, b]).to_json()
    other_way = batch_aggregate(plan, [b, a]).to_json()
    split = merge([batch_aggregate(plan, [b]), batch_aggregate(plan, [a])]).to_json()
    assert one_way == other_way == split
    assert one_way["readings"] == 2
    assert one_way["metrics"]["m"]["latest"] == ["2026-11-10T12:00:00Z", "r-000001", "5"]
    with pytest.raises(ValueError, match="twice"):
        batch_aggregate(plan, [a, _from("dev-a", reading("r-000001", "m", "3"))])
