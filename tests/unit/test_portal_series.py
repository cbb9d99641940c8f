"""hub.portal.series.daily_series: readings bucketed into the contract's local days, per aggregation."""

from __future__ import annotations

import pytest

from hub.portal.series import daily_series

pytestmark = pytest.mark.unit
METRICS = {
    "kwh": {"aggregation": "sum", "unit": "kWh"},
    "peak": {"aggregation": "max", "unit": "kW"},
    "jobs": {"aggregation": "count", "unit": "job"},
    "meter": {"aggregation": "latest", "unit": "kWh"},
}


def r(metric: str, quantity: str, timestamp: str) -> dict[str, str]:
    return {"metric": metric, "quantity": quantity, "timestamp": timestamp}


def test_readings_fall_into_local_days_per_aggregation() -> None:
    readings = [
        r("kwh", "1.5", "2026-10-01T21:59:00Z"),  # 23:59 in Berlin: 1 October
        r("kwh", "2.25", "2026-10-01T22:00:00Z"),  # midnight in Berlin: 2 October
        r("kwh", "1", "2026-10-02T10:00:00+02:00"),
        r("peak", "40.5", "2026-10-02T08:00:00Z"),
        r("peak", "12", "2026-10-02T09:00:00Z"),
        r("jobs", "7", "2026-10-02T09:00:00Z"),  # a count counts readings, not quantities
        r("jobs", "1", "2026-10-02T11:00:00Z"),
        r("kwh", "9", "2026-09-30T21:00:00Z"),  # 30 September in Berlin: another period
        r("other", "5", "2026-10-02T09:00:00Z"),  # not a metric of the contract
    ]
    series = daily_series(readings, METRICS, "Europe/Berlin", "2026-10")
    assert len(series["days"]) == 31 and series["days"][0] == "2026-10-01"
    values = {m: v["values"] for m, v in series["metrics"].items()}
    assert values["kwh"][:3] == ["1.5", "3.25", None]
    assert values["peak"][1] == "40.5" and values["jobs"][1] == "2"
    assert sum(v is not None for v in values["kwh"]) == 2
    assert set(values) == set(METRICS)


def test_latest_is_the_latest_instant_across_the_dst_change() -> None:
    # 25 October 2026, Berlin: 03:00 CEST becomes 02:00 CET; 02:15+01:00 is 45 minutes after 02:30+02:00
    readings = [
        r("meter", "2", "2026-10-25T01:15:00Z"),  # 02:15 CET (later)
        r("meter", "1", "2026-10-25T00:30:00Z"),  # 02:30 CEST (earlier)
    ]
    for order in (readings, readings[::-1]):
        series = daily_series(order, METRICS, "Europe/Berlin", "2026-10")
        assert series["metrics"]["meter"]["values"][24] == "2"
