"""hub.portal.charts and hub.store.usage_days on their own: day aggregates, the cumulative cost, the
forecast band and the budget crossing, and which readings of a usage transaction count."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from chaincode.plan import parse_plan
from hub.portal import charts
from hub.store.usage_days import accepted_readings, day_aggregates
from tests.helpers.chaincode import sample_contract

pytestmark = pytest.mark.unit
PLAN = parse_plan(sample_contract(minimum_commitment=None, start="2026-10-01"))


def r(rid: str, metric: str, quantity: str, timestamp: str, device: str = "d1") -> dict[str, str]:
    return {"id": rid, "metric": metric, "quantity": quantity, "timestamp": timestamp, "device_id": device}


def test_day_aggregates_group_by_local_day_and_device() -> None:
    groups = day_aggregates(PLAN, [
        r("1", "scan", "2", "2026-10-01T21:59:00Z"),  # 23:59 in Berlin: 1 October
        r("2", "scan", "3", "2026-10-01T22:00:00Z"),  # midnight in Berlin: 2 October
        r("3", "scan", "1", "2026-10-02T10:00:00+02:00", device="d2"),
    ])
    assert {k: a.metrics["scan"].sum for k, a in groups.items()} == {
        ("2026-10", "2026-10-01", "d1"): Decimal(2), ("2026-10", "2026-10-02", "d1"): Decimal(3),
        ("2026-10", "2026-10-02", "d2"): Decimal(1)}


def test_cumulative_cost_is_the_rating_of_the_days_so_far() -> None:
    days = {day: agg for (_, day, _), agg in day_aggregates(PLAN, [
        r("1", "scan", "2", "2026-10-03T10:00:00Z"), r("2", "scan", "1", "2026-10-10T10:00:00Z")]).items()}
    cumulative = charts.cumulative_cost(PLAN, days, "2026-10", dt.date(2026, 10, 12))
    assert len(cumulative) == 31 and cumulative[12:] == [None] * 19
    # platform 500 flat from day 1; 2 scans at 85 from the 3rd, 3 from the 10th; 19 % tax
    assert cumulative[0] == "595.00" and cumulative[2] == "797.30" and cumulative[9] == "898.45"
    labels = [f"2026-10-{d:02d}" for d in range(1, 32)]
    assert charts.budget_crossing(cumulative, "800", labels) == "2026-10-10"
    assert charts.budget_crossing(cumulative, "898.45", labels) is None  # reaching it is not exceeding it
    assert charts.budget_crossing(cumulative, None, labels) is None
    ended = charts.cumulative_cost(PLAN, days, "2026-10", None)
    assert ended[-1] == "898.45" and None not in ended


def test_forecast_band_runs_from_today_to_the_forecast_with_the_recent_rate_as_the_other_edge() -> None:
    cumulative: list[str | None] = ["100.00", "110.00", "120.00", "130.00", "160.00", "190.00", "220.00",
                                    "250.00", *[None] * 22]
    band = charts.forecast_band(cumulative, "900.00")
    assert band is not None and band["line"][:7] == [None] * 7 and band["line"][7] == "250.00"
    assert band["line"][-1] == "900.00"
    # the last seven days added 150.00: 250 + 22 days x 150/7 = 721.43 at period end, below the run rate's
    assert band["low"][-1] == "721.43" and band["high"][-1] == "900.00"
    assert all(Decimal(lo) <= Decimal(mid) <= Decimal(hi) for lo, mid, hi in
               zip(band["low"][7:], band["line"][7:], band["high"][7:], strict=True))
    assert charts.forecast_band(cumulative, None) is None
    assert charts.forecast_band([None] * 30, "1.00") is None


def test_only_accepted_readings_of_accepted_messages_count() -> None:
    args = [json.dumps({"messages": [
        {"device_id": "d1", "readings": [{"id": "a"}, {"id": "b"}, {"id": "c"}]},
        {"device_id": "d2", "readings": [{"id": "a"}]},
        {"device_id": "d3", "readings": [{"id": "x"}]},
    ]}).encode()]
    response = json.dumps({"results": [
        {"status": "accepted", "accepted": 2, "duplicates": ["b"]},
        {"status": "accepted", "accepted": 1, "duplicates": []},
        {"status": "rejected", "accepted": 0, "duplicates": [], "error": {"code": "bad_signature"}},
    ]}).encode()
    got = [(x["device_id"], x["id"]) for x in accepted_readings(args, response)]
    assert got == [("d1", "a"), ("d1", "c"), ("d2", "a")]
