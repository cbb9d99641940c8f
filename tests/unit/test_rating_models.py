"""Rating: every charge model and aggregation, commitment, cap, tax, the API.md example."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from chaincode.rating import (
    BatchAggregate,
    batch_aggregate,
    merge,
    parse_plan,
    parse_timestamp,
    rate,
    tou_window,
)
from tests.helpers.rating import EXAMPLE_CONTRACT, contract, reading, simple_plan

pytestmark = pytest.mark.unit

TIERS = [
    {"up_to": "100", "unit_price": "85.00"},
    {"up_to": "500", "unit_price": "70.00"},
    {"up_to": None, "unit_price": "55.00"},
]


def rated(plan: Any, readings: list[Any]) -> dict[str, Any]:
    return rate(plan, batch_aggregate(plan, readings)).to_json()


def one_line(charge: dict[str, Any], quantity: str, aggregation: str = "sum", **top: Any) -> dict[str, str]:
    plan = simple_plan([charge], {"m": aggregation}, **top)
    out = rated(plan, [reading("r1", "m", quantity)])
    assert len(out["lines"]) == 1
    return out["lines"][0]


def test_api_example_exactly() -> None:
    """API.md: 500.00 + 130 scans graduated (100x85 + 30x70) + 30.00 h x 12.50, 19% tax."""
    plan = parse_plan(EXAMPLE_CONTRACT)
    readings = [reading(f"s{i}", "scan", "1", "2026-11-03T09:15:00+01:00") for i in range(130)]
    readings += [reading(f"h{i}", "magnet_hours", "0.75", "2026-11-03T09:59:00+01:00") for i in range(40)]
    readings.append(reading("k1", "peak_kw", "42.5", "2026-11-05T10:00:00+01:00"))
    out = rated(plan, readings)
    assert out == {
        "lines": [
            {"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"},
            {"charge_id": "scans", "model": "graduated", "metric": "scan", "quantity": "130",
             "amount": "10600.00"},
            {"charge_id": "hours", "model": "per_unit", "metric": "magnet_hours", "quantity": "30.00",
             "amount": "375.00"},
        ],
        "subtotal": "11475.00",
        "tax": "2180.25",
        "total": "13655.25",
    }  # fmt: skip


def test_flat() -> None:
    plan = simple_plan([{"id": "f", "model": "flat", "amount": "99.99"}])
    assert rated(plan, []) == {
        "lines": [{"charge_id": "f", "model": "flat", "quantity": "1", "amount": "99.99"}],
        "subtotal": "99.99", "tax": "0.00", "total": "99.99",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("quantity", "price", "amount"),
    [("3", "1.50", "4.50"), ("0.333", "0.015", "0.00"), ("0.334", "0.015", "0.01"),
     ("1", "0.005", "0.01"), ("2.5", "0.001", "0.00"), ("0", "99", "0.00"),
     ("1000000000000", "0.000000000001", "1.00")],
)  # fmt: skip
def test_per_unit(quantity: str, price: str, amount: str) -> None:
    line = one_line({"id": "c", "model": "per_unit", "metric": "m", "unit_price": price}, quantity)
    assert line == {"charge_id": "c", "model": "per_unit", "metric": "m", "quantity": quantity,
                    "amount": amount}  # fmt: skip


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [("0", "0.00"), ("1", "85.00"), ("100", "8500.00"), ("100.5", "8535.00"), ("130", "10600.00"),
     ("500", "36500.00"), ("501", "36555.00"), ("1000", "64000.00"), ("0.001", "0.09")],
)  # fmt: skip
def test_graduated(quantity: str, amount: str) -> None:
    line = one_line({"id": "g", "model": "graduated", "metric": "m", "tiers": TIERS}, quantity)
    assert (line["quantity"], line["amount"]) == (quantity, amount)


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [("0", "0.00"), ("100", "8500.00"), ("100.5", "7035.00"), ("130", "9100.00"), ("500", "35000.00"),
     ("501", "27555.00"), ("1000", "55000.00")],
)  # fmt: skip
def test_volume(quantity: str, amount: str) -> None:
    line = one_line({"id": "v", "model": "volume", "metric": "m", "tiers": TIERS}, quantity)
    assert (line["quantity"], line["amount"]) == (quantity, amount)


@pytest.mark.parametrize(
    ("quantity", "size", "amount"),
    [("0", "10", "0.00"), ("1", "10", "25.00"), ("10", "10", "25.00"), ("10.01", "10", "50.00"),
     ("25", "10", "75.00"), ("0.5", "0.5", "25.00"), ("0.51", "0.5", "50.00"), ("1", "0.3", "100.00"),
     ("0.9", "0.3", "75.00"), ("0.000000000001", "1000000", "25.00")],
)  # fmt: skip
def test_package(quantity: str, size: str, amount: str) -> None:
    charge = {"id": "p", "model": "package", "metric": "m", "package_size": size, "package_price": "25.00"}
    line = one_line(charge, quantity)
    assert (line["quantity"], line["amount"]) == (quantity, amount)


TOU_CHARGE = {
    "id": "t",
    "model": "time_of_use",
    "metric": "m",
    "windows": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00", "unit_price": "95.00"},
        {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "07:00", "to": "20:00", "unit_price": "80.00"},
        {"days": ["sat"], "from": "00:00", "to": "24:00", "unit_price": "10.00"},
    ],
    "default_unit_price": "60.00",
}


@pytest.mark.parametrize(
    ("ts", "window"),
    [
        ("2026-11-02T08:00:00+01:00", 0),  # Monday, `from` inclusive
        ("2026-11-02T07:00:00Z", 0),  # the same instant in UTC
        ("2026-11-02T17:59:59.999999+01:00", 0),
        ("2026-11-02T18:00:00+01:00", 1),  # `to` exclusive: falls to the next window
        ("2026-11-02T07:59:59+01:00", 1),
        ("2026-11-02T06:59:59+01:00", -1),
        ("2026-11-02T20:00:00+01:00", -1),
        ("2026-11-07T00:00:00+01:00", 2),  # Saturday all day
        ("2026-11-07T23:59:59+01:00", 2),
        ("2026-11-06T23:00:00Z", 2),  # Friday 23:00 UTC is Saturday 00:00 in Berlin
        ("2026-11-08T12:00:00+01:00", -1),  # Sunday
        ("2026-03-30T06:30:00Z", 0),  # Monday after the DST change: 08:30 CEST (07:30 in CET)
        ("2026-03-27T06:30:00Z", 1),  # Friday before it: 07:30 CET
    ],
)
def test_tou_window(ts: str, window: int) -> None:
    plan = simple_plan([TOU_CHARGE], timezone="Europe/Berlin")
    assert tou_window(plan.charges[0], parse_timestamp(ts)) == window


def test_tou_window_in_another_zone() -> None:
    plan = simple_plan([TOU_CHARGE], timezone="America/New_York")
    # Monday 13:00 UTC is 08:00 in New York (EST)
    assert tou_window(plan.charges[0], parse_timestamp("2026-11-02T13:00:00Z")) == 0
    assert tou_window(plan.charges[0], parse_timestamp("2026-11-02T12:59:59Z")) == 1
    assert tou_window(plan.charges[0], parse_timestamp("2026-11-02T12:59:59Z"), "Europe/Berlin") == 0


def test_time_of_use_line() -> None:
    plan = simple_plan([TOU_CHARGE], timezone="Europe/Berlin")
    readings = [
        reading("a", "m", "1.5", "2026-11-02T09:00:00+01:00"),  # 95
        reading("b", "m", "2", "2026-11-02T19:00:00+01:00"),  # 80
        reading("c", "m", "0.25", "2026-11-07T12:00:00+01:00"),  # 10
        reading("d", "m", "1", "2026-11-08T12:00:00+01:00"),  # default 60
    ]
    out = rated(plan, readings)
    assert out["lines"] == [
        {"charge_id": "t", "model": "time_of_use", "metric": "m", "quantity": "4.75", "amount": "365.00"}
    ]
    agg = batch_aggregate(plan, readings).to_json()
    assert agg["time_of_use"] == {"t": {"windows": ["1.5", "2", "0.25"], "default": "1"}}


def test_time_of_use_rounds_once() -> None:
    charge = {**TOU_CHARGE, "default_unit_price": "0.005"}
    plan = simple_plan([charge])
    # three readings at 0.005 each: rounding per reading would give 3 x 0.01; once gives 0.02 (0.015 half-up)
    readings = [reading(f"r{i}", "m", "1", f"2026-11-08T1{i}:00:00Z") for i in range(3)]
    assert rated(plan, readings)["lines"][0]["amount"] == "0.02"


def test_dynamic() -> None:
    plan = simple_plan([{"id": "d", "model": "dynamic", "metric": "m"}])
    readings = [
        reading("a", "m", "10", unit_price="0.1234"),
        reading("b", "m", "2.5", unit_price="0.0001"),
        reading("c", "m", "0.333", unit_price="3"),
    ]
    out = rated(plan, readings)
    # 1.234 + 0.00025 + 0.999 = 2.23325 -> 2.23 (rounded once, not per reading)
    assert out["lines"] == [{"charge_id": "d", "model": "dynamic", "metric": "m", "quantity": "12.833",
                             "amount": "2.23"}]  # fmt: skip
    assert batch_aggregate(plan, readings).to_json()["dynamic"] == {"d": "2.23325"}


def test_charges_without_readings_give_zero_lines() -> None:
    charges = [
        {"id": "pu", "model": "per_unit", "metric": "m", "unit_price": "1"},
        {"id": "g", "model": "graduated", "metric": "m", "tiers": TIERS},
        {"id": "v", "model": "volume", "metric": "m", "tiers": TIERS},
        {"id": "p", "model": "package", "metric": "m", "package_size": "1", "package_price": "1"},
        TOU_CHARGE,
        {"id": "d", "model": "dynamic", "metric": "m"},
    ]
    out = rate(simple_plan(charges), merge([]))
    assert [(ln["quantity"], ln["amount"]) for ln in out.to_json()["lines"]] == [("0", "0.00")] * 6
    assert out.total == Decimal("0.00")


@pytest.mark.parametrize(
    ("aggregation", "quantity"),
    [("sum", "7.5"), ("max", "4.0"), ("count", "4"), ("latest", "1")],
)
def test_aggregations(aggregation: str, quantity: str) -> None:
    charge = {"id": "c", "model": "per_unit", "metric": "m", "unit_price": "2"}
    plan = simple_plan([charge], {"m": aggregation})
    readings = [
        reading("a", "m", "2.5", "2026-11-03T10:00:00Z"),
        reading("b", "m", "4.0", "2026-11-03T09:00:00Z"),
        reading("c", "m", "1", "2026-11-03T12:00:00+01:00"),  # latest: 11:00Z
        reading("d", "m", "0", "2026-11-03T10:30:00Z"),
    ]
    line = rated(plan, readings)["lines"][0]
    assert line["quantity"] == quantity
    assert Decimal(line["amount"]) == Decimal(quantity) * 2


def test_latest_ties_are_broken_by_reading_id_then_value() -> None:
    plan = simple_plan([{"id": "c", "model": "per_unit", "metric": "m", "unit_price": "1"}], {"m": "latest"})
    same = "2026-11-03T10:00:00Z"
    readings = [reading("r-a", "m", "5", same), reading("r-b", "m", "3", "2026-11-03T11:00:00+01:00")]
    assert rated(plan, readings)["lines"][0]["quantity"] == "3"  # same instant, greater id wins
    assert rated(plan, readings[::-1])["lines"][0]["quantity"] == "3"


def test_max_of_equal_values_is_order_free() -> None:
    plan = simple_plan([{"id": "c", "model": "per_unit", "metric": "m", "unit_price": "1"}], {"m": "max"})
    readings = [reading("a", "m", "2"), reading("b", "m", "2.0"), reading("c", "m", "2.00"),
                reading("d", "m", "1.999")]  # fmt: skip
    orders = (readings, readings[::-1], readings[1:] + readings[:1], readings[2:] + readings[:2])
    results = {rated(plan, order)["lines"][0]["quantity"] for order in orders}
    assert results == {"2.00"}


# --- commitment, cap, tax -------------------------------------------------------------------------------

PER_UNIT = {"id": "u", "model": "per_unit", "metric": "m", "unit_price": "1.00"}
FLAT = {"id": "f", "model": "flat", "amount": "100.00"}


def lines_of(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [(ln["charge_id"], ln["amount"]) for ln in out["lines"]]


@pytest.mark.parametrize(
    ("used", "expected_true_up", "subtotal"),
    [("50", "850.00", "1000.00"), ("899.99", "0.01", "1000.00"), ("900", None, "1000.00"),
     ("950", None, "1050.00")],
)
def test_minimum_commitment(used: str, expected_true_up: str | None, subtotal: str) -> None:
    plan = simple_plan([FLAT, PER_UNIT], minimum_commitment="1000.00")
    out = rated(plan, [reading("a", "m", used)])
    true_ups = [ln for ln in out["lines"] if ln["charge_id"] == "minimum_commitment_true_up"]
    if expected_true_up is None:
        assert true_ups == []
    else:
        assert true_ups == [{"charge_id": "minimum_commitment_true_up", "model": "minimum_commitment",
                             "quantity": "1", "amount": expected_true_up}]  # fmt: skip
    assert out["subtotal"] == subtotal


@pytest.mark.parametrize(
    ("used", "cap", "subtotal"),
    [("50", None, "150.00"), ("500", None, "600.00"), ("500.01", "-0.01", "600.00"),
     ("10000", "-9500.00", "600.00")],
)
def test_maximum_caps_metered_lines_only(used: str, cap: str | None, subtotal: str) -> None:
    plan = simple_plan([FLAT, PER_UNIT], maximum="500.00")
    out = rated(plan, [reading("a", "m", used)])
    caps = [ln for ln in out["lines"] if ln["charge_id"] == "maximum_cap"]
    assert caps == ([] if cap is None else [{"charge_id": "maximum_cap", "model": "maximum", "quantity": "1",
                                             "amount": cap}])  # fmt: skip
    assert out["subtotal"] == subtotal


def test_cap_then_commitment() -> None:
    plan = simple_plan([FLAT, PER_UNIT], maximum="200.00", minimum_commitment="250.00")
    assert lines_of(rated(plan, [reading("a", "m", "1000")])) == [
        ("f", "100.00"), ("u", "1000.00"), ("maximum_cap", "-800.00")
    ]  # fmt: skip
    out = rated(plan, [reading("a", "m", "20")])
    assert lines_of(out) == [("f", "100.00"), ("u", "20.00"), ("minimum_commitment_true_up", "130.00")]
    assert out["subtotal"] == "250.00"


@pytest.mark.parametrize(
    ("currency", "amount", "rate_", "tax", "total"),
    [
        ("EUR", "11475.00", "0.19", "2180.25", "13655.25"),
        ("EUR", "0.50", "0.19", "0.10", "0.60"),  # 0.095 -> 0.10 half-up
        ("EUR", "0.50", "0.07", "0.04", "0.54"),  # 0.035 -> 0.04 (half-even: 0.04)
        ("EUR", "0.50", "0.05", "0.03", "0.53"),  # 0.025 -> 0.03 (half-even would give 0.02)
        ("EUR", "10.00", "0", "0.00", "10.00"),
        ("JPY", "1250", "0.10", "125", "1375"),
        ("JPY", "1005", "0.1", "101", "1106"),  # 100.5 -> 101
        ("KWD", "1.005", "0.1", "0.101", "1.106"),  # 0.1005 -> 0.101
        ("CLP", "995", "0.19", "189", "1184"),  # 189.05
        ("CHF", "100.00", "0.081", "8.10", "108.10"),
    ],
)
def test_tax_and_currency(currency: str, amount: str, rate_: str, tax: str, total: str) -> None:
    plan = simple_plan([{"id": "f", "model": "flat", "amount": amount}], currency=currency,
                       tax={"rate": rate_, "category": "S"})  # fmt: skip
    out = rated(plan, [])
    assert (out["subtotal"], out["tax"], out["total"]) == (amount, tax, total)


def test_jpy_lines_have_no_decimals() -> None:
    charge = {"id": "u", "model": "per_unit", "metric": "m", "unit_price": "12.5"}
    plan = simple_plan([charge], currency="JPY")
    out = rated(plan, [reading("a", "m", "3")])  # 37.5 -> 38
    assert out["lines"][0]["amount"] == "38" and out["total"] == "38" and out["tax"] == "0"


def test_line_rounding_happens_once_per_charge_and_subtotal_adds_rounded_lines() -> None:
    charges = [{"id": f"c{i}", "model": "per_unit", "metric": "m", "unit_price": "0.005"} for i in range(3)]
    out = rated(simple_plan(charges), [reading("a", "m", "1")])
    assert [ln["amount"] for ln in out["lines"]] == ["0.01"] * 3
    assert out["subtotal"] == "0.03"  # not round(0.015) = 0.02


def test_rate_refuses_an_aggregate_that_does_not_match_the_plan() -> None:
    plan = simple_plan([TOU_CHARGE])
    agg = batch_aggregate(plan, [reading("a", "m", "1")])
    agg.time_of_use.clear()
    with pytest.raises(ValueError, match="time_of_use"):
        rate(plan, agg)
    dyn = simple_plan([{"id": "d", "model": "dynamic", "metric": "m"}])
    agg2 = BatchAggregate.from_json(batch_aggregate(dyn, [reading("a", "m", "1", unit_price="1")]).to_json())
    agg2.dynamic.clear()
    with pytest.raises(ValueError, match="dynamic"):
        rate(dyn, agg2)


def test_contract_dates_do_not_change_rating() -> None:
    a = parse_plan(contract(start="2026-01-01"))
    b = parse_plan(contract(start="2026-11-01", end="2027-01-31"))
    readings = [reading("a", "scan", "150", "2026-11-15T00:00:00Z")]
    assert rated(a, readings) == rated(b, readings)
    assert b.end == dt.date(2027, 1, 31)


def test_tou_window_refuses_naive_times_and_zoneless_charges() -> None:
    plan = simple_plan([TOU_CHARGE])
    with pytest.raises(ValueError, match="aware"):
        tou_window(plan.charges[0], dt.datetime(2026, 11, 2, 9))
    zoneless = dataclasses.replace(plan.charges[0], timezone=None)
    with pytest.raises(ValueError, match="timezone"):
        tou_window(zoneless, parse_timestamp("2026-11-02T09:00:00Z"))
    assert tou_window(zoneless, parse_timestamp("2026-11-02T09:00:00Z"), "UTC") == 0
