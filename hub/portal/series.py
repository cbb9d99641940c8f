"""Daily usage per metric for the portal's charts, in the contract's local days.

Built from the period's readings on the ledger (`GetReadings`), so the chart shows exactly what will be
billed. That read is O(readings of the period): fine for a person looking at one contract; a hub serving
charts for millions of readings a month would keep daily buckets in the batch aggregates instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo


def period_days(period: str) -> list[dt.date]:
    year, month = (int(x) for x in period.split("-"))
    day = dt.date(year, month, 1)
    days = []
    while day.month == month:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def daily_series(
    readings: Iterable[Mapping[str, Any]], metrics: Mapping[str, Any], timezone: str, period: str
) -> dict[str, Any]:
    """{"days": [...], "metrics": {metric: {"unit", "aggregation", "values": [per day]}}}: sums per day for
    sum/count metrics, the day's maximum for max, the day's last reading for latest."""
    tz = ZoneInfo(timezone)
    days = period_days(period)
    index = {d: i for i, d in enumerate(days)}
    values: dict[str, list[Decimal | None]] = {m: [None] * len(days) for m in metrics}
    latest: dict[tuple[str, int], float] = {}
    for reading in readings:
        metric = reading.get("metric")
        if metric not in values:
            continue
        moment = dt.datetime.fromisoformat(str(reading["timestamp"]).replace("Z", "+00:00")).astimezone(tz)
        slot = index.get(moment.date())
        if slot is None:
            continue
        quantity = Decimal(str(reading["quantity"]))
        aggregation = (metrics[metric] or {}).get("aggregation", "sum")
        current = values[metric][slot]
        if aggregation == "count":
            values[metric][slot] = (current or Decimal(0)) + 1
        elif aggregation == "max":
            values[metric][slot] = quantity if current is None else max(current, quantity)
        elif aggregation == "latest":
            # compared as instants: local times (as ISO strings, or as datetimes sharing one tzinfo, which
            # Python compares ignoring the offset) sort wrongly across a DST change: 02:15+01:00 is later
            # than 02:30+02:00
            instant = moment.timestamp()
            if (metric, slot) not in latest or instant >= latest[(metric, slot)]:
                latest[(metric, slot)] = instant
                values[metric][slot] = quantity
        else:
            values[metric][slot] = (current or Decimal(0)) + quantity
    return {
        "days": [d.isoformat() for d in days],
        "metrics": {
            m: {
                "unit": (metrics[m] or {}).get("unit", ""),
                "aggregation": (metrics[m] or {}).get("aggregation"),
                "values": [None if v is None else str(v) for v in vals],
            }
            for m, vals in values.items()
        },
    }
