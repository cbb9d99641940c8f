"""Builders for rating tests: the API.md example plan and small plans/readings around it."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

from chaincode.rating import ReadingIn, parse_plan, parse_timestamp

# The "Contract and plan" example of API.md (shape and numbers as documented there).
EXAMPLE_CONTRACT: dict[str, Any] = {
    "id": "ctr-mri-001",
    "provider": "ProviderMSP",
    "customer": "CustomerMSP",
    "assets": ["mri-berlin-01"],
    "currency": "EUR",
    "timezone": "Europe/Berlin",
    "start": "2026-11-01",
    "end": None,
    "metrics": {
        "scan": {"aggregation": "sum", "unit": "scan"},
        "magnet_hours": {"aggregation": "sum", "unit": "h"},
        "peak_kw": {"aggregation": "max", "unit": "kW"},
    },
    "charges": [
        {"id": "platform", "model": "flat", "amount": "500.00"},
        {
            "id": "scans",
            "model": "graduated",
            "metric": "scan",
            "tiers": [{"up_to": "100", "unit_price": "85.00"}, {"up_to": None, "unit_price": "70.00"}],
        },
        {"id": "hours", "model": "per_unit", "metric": "magnet_hours", "unit_price": "12.50"},
    ],
    "minimum_commitment": "2000.00",
    "maximum": None,
    "tax": {"rate": "0.19", "category": "S"},
    "erp": {"provider": "sap-soap", "customer": "oracle-rest"},
}


def contract(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the example contract with top-level fields replaced."""
    c = copy.deepcopy(EXAMPLE_CONTRACT)
    c.update(copy.deepcopy(overrides))
    return c


def simple_plan(charges: list[dict[str, Any]], metrics: dict[str, str] | None = None, **top: Any) -> Any:
    """A parsed plan with the given charges; `metrics` maps name -> aggregation (default: m = sum)."""
    metrics = metrics or {"m": "sum"}
    body = contract(
        metrics={k: {"aggregation": v, "unit": "u"} for k, v in metrics.items()},
        charges=charges,
        minimum_commitment=None,
        tax=None,
    )
    body.update(top)
    return parse_plan(body)


def reading(
    rid: str, metric: str, quantity: str, ts: str = "2026-11-10T12:00:00Z", unit_price: str | None = None
) -> ReadingIn:
    price = None if unit_price is None else Decimal(unit_price)
    return ReadingIn(rid, metric, Decimal(quantity), parse_timestamp(ts), price)


def at(ts: str) -> dt.datetime:
    return parse_timestamp(ts)
