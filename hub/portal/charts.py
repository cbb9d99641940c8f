"""The portal's chart data, computed from the daily aggregates (`hub.store.usage_days`, ADR 0044).

Every figure is the chaincode's own: a day's value per metric is its `BatchAggregate` stats, cumulative
cost on a day is `rating.rate` of the merged aggregates up to that day (what closing the period on that day
would have invoiced), so the last point equals the usage endpoint's cost to date.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from chaincode import rating
from chaincode.plan import Plan
from hub.portal.series import period_days
from hub.store.models import UsageDay


def _agg(row: UsageDay) -> rating.BatchAggregate:
    return rating.BatchAggregate.from_json(json.loads(row.aggregate))


def merged_days(rows: Iterable[UsageDay]) -> dict[str, rating.BatchAggregate]:
    """{local day: aggregate of every device's readings that day}."""
    per_day: dict[str, list[rating.BatchAggregate]] = {}
    for row in rows:
        per_day.setdefault(row.day, []).append(_agg(row))
    return {day: rating.merge(aggs) for day, aggs in per_day.items()}


def metric_value(agg: rating.BatchAggregate, metric: str, aggregation: str) -> Decimal | None:
    stats = agg.metrics.get(metric)
    if stats is None:
        return None
    if aggregation == "count":
        return Decimal(stats.count)
    if aggregation == "max":
        return stats.max
    if aggregation == "latest":
        return stats.latest[2]
    return stats.sum


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def daily(days: Mapping[str, rating.BatchAggregate], metrics: Mapping[str, Any],
          period: str) -> dict[str, Any]:
    """Same shape as `series.daily_series` (which reads every reading): days and per-metric values."""
    labels = [d.isoformat() for d in period_days(period)]
    out: dict[str, Any] = {}
    for metric, definition in metrics.items():
        aggregation = (definition or {}).get("aggregation", "sum")
        values = [_text(metric_value(days[d], metric, aggregation)) if d in days else None for d in labels]
        out[metric] = {"unit": (definition or {}).get("unit", ""), "aggregation": aggregation,
                       "values": values}
    return {"days": labels, "metrics": out}


def per_asset(rows: Iterable[UsageDay], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each device's (asset's) share of the period per metric, and its reading count."""
    by_device: dict[str, list[rating.BatchAggregate]] = {}
    for row in rows:
        by_device.setdefault(row.device_id, []).append(_agg(row))
    out = []
    for device, aggs in sorted(by_device.items()):
        agg = rating.merge(aggs)
        values = {m: _text(metric_value(agg, m, (d or {}).get("aggregation", "sum")))
                  for m, d in metrics.items()}
        out.append({"asset_id": device, "readings": agg.readings, "metrics": values})
    return out


def cumulative_cost(plan: Plan, days: Mapping[str, rating.BatchAggregate], period: str,
                    today: dt.date | None) -> list[str | None]:
    """Per day of the period, the total (incl. tax) that closing after that day would invoice; None for
    days after `today` (a running period) — all days count for a period that has ended."""
    out: list[str | None] = []
    running = rating.BatchAggregate()
    for day in period_days(period):
        if today is not None and day > today:
            out.append(None)
            continue
        agg = days.get(day.isoformat())
        if agg is not None:
            running = rating.merge([running, agg])
        out.append(rating.rate(plan, running).to_json()["total"])
    return out


def forecast_band(cumulative: list[str | None],
                  forecast_total: str | None) -> dict[str, list[str | None]] | None:
    """The forecast from today to period end, as a line and a band. The line runs from today's cost to the
    usage endpoint's forecast total (linear run rate over the period so far). The band's edges are that
    and the run rate of the last seven days (or fewer, early in a period) taken to period end, whichever is
    lower or higher; before today all three are None."""
    if forecast_total is None:
        return None
    known = [(i, Decimal(v)) for i, v in enumerate(cumulative) if v is not None]
    if not known:
        return None
    today_i, today_cost = known[-1]
    days = len(cumulative)
    remaining_days = days - 1 - today_i
    exponent = Decimal(forecast_total).as_tuple().exponent  # the currency's minor units, as the ledger wrote
    quantum = Decimal(1).scaleb(exponent if isinstance(exponent, int) else -2)
    full_end = Decimal(forecast_total)
    back = min(7, today_i)
    if back > 0:
        recent_per_day = (today_cost - Decimal(cumulative[today_i - back] or "0")) / back
        recent_end = today_cost + recent_per_day * remaining_days
    else:
        recent_end = full_end
    low_end, high_end = min(full_end, recent_end), max(full_end, recent_end)

    def path(target: Decimal) -> list[str | None]:
        points: list[str | None] = []
        for i in range(days):
            if i < today_i:
                points.append(None)
            elif remaining_days == 0:
                points.append(str(target.quantize(quantum, rounding=ROUND_HALF_UP)))
            else:
                share = Decimal(i - today_i) / Decimal(remaining_days)
                value = today_cost + (target - today_cost) * share
                points.append(str(value.quantize(quantum, rounding=ROUND_HALF_UP)))
        return points
    return {"line": path(full_end), "low": path(low_end), "high": path(high_end)}


def budget_crossing(cumulative: list[str | None], budget: str | None, labels: list[str]) -> str | None:
    """The first day whose cumulative cost exceeds the budget, if any."""
    if budget is None:
        return None
    limit = Decimal(budget)
    for day, value in zip(labels, cumulative, strict=True):
        if value is not None and Decimal(value) > limit:
            return day
    return None
