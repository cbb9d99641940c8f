"""The run-rate forecast of a running period and the money views beside it (ADR 0043, 0051): plain
arithmetic over the ledger's answers, in Decimal, half-up. Period bounds are the chaincode's own
(`chaincode/periods.py`: local midnight on the 1st, DST-safe), so the hub and the ledger never disagree on
which period an instant belongs to."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from chaincode.periods import period_bounds, period_of

FIXED_MODELS = {"flat"}
ADJUSTMENT_MODELS = {"minimum_commitment", "maximum_cap", "maximum"}


def current_period(timezone: str, now: dt.datetime) -> str:
    """The period (YYYY-MM) running at `now` in the contract's zone."""
    return period_of(now, timezone or "UTC")


def forecast(usage: dict[str, Any], contract: dict[str, Any], period: str,
             now: dt.datetime) -> dict[str, Any] | None:
    """Run-rate forecast of the running period: usage lines scaled by elapsed time, flat lines as they are,
    then the minimum commitment and tax as the plan states them. Approximate by nature (tiered prices make
    the true curve non-linear), and labelled as such; a closed or future period has no forecast."""
    start, end = period_bounds(period, contract.get("timezone") or "UTC")
    cost = usage.get("cost") or {}
    if not start <= now < end or not cost.get("lines"):
        return None
    try:
        exponent = -Decimal(str(cost.get("total", "0"))).as_tuple().exponent  # the currency's minor units
        quantum = Decimal(1).scaleb(-int(exponent))
        elapsed = Decimal((now - start).total_seconds())
        scale = Decimal((end - start).total_seconds()) / elapsed
        fixed = sum((Decimal(line["amount"]) for line in cost["lines"] if line.get("model") in FIXED_MODELS),
                    Decimal(0))
        variable = sum((Decimal(line["amount"]) for line in cost["lines"]
                        if line.get("model") not in FIXED_MODELS | ADJUSTMENT_MODELS), Decimal(0))
        subtotal = minimum_commitment((fixed + variable * scale).quantize(quantum, rounding=ROUND_HALF_UP),
                                      contract.get("minimum_commitment"), quantum)
        tax = tax_on(subtotal, contract, quantum)
    except (InvalidOperation, KeyError, ZeroDivisionError, TypeError):
        return None
    return {"method": "linear_run_rate", "subtotal": str(subtotal), "tax": str(tax),
            "total": str(subtotal + tax), "elapsed_fraction": str((1 / scale).quantize(Decimal("0.0001"))),
            "metrics": metric_forecast(usage, contract, scale)}


def minimum_commitment(subtotal: Decimal, minimum: Any, quantum: Decimal) -> Decimal:
    """The subtotal, raised to the plan's minimum commitment when it falls short."""
    if minimum is not None and subtotal < Decimal(str(minimum)):
        return Decimal(str(minimum)).quantize(quantum, rounding=ROUND_HALF_UP)
    return subtotal


def tax_on(subtotal: Decimal, contract: dict[str, Any], quantum: Decimal) -> Decimal:
    """The plan's tax rate (none: 0) on the subtotal, rounded half-up to the currency's minor unit."""
    rate = Decimal(str((contract.get("tax") or {}).get("rate", "0")))
    return (subtotal * rate).quantize(quantum, rounding=ROUND_HALF_UP)


def metric_forecast(usage: dict[str, Any], contract: dict[str, Any], scale: Decimal) -> dict[str, str]:
    """Each metric's quantity at period end at today's rate: sums and counts scale with elapsed time; a
    maximum or a latest value is forecast as it stands (to two decimals, as the forecast is an estimate)."""
    out: dict[str, str] = {}
    stats = (usage.get("aggregate") or {}).get("metrics") or {}
    for metric, definition in (contract.get("metrics") or {}).items():
        aggregation = (definition or {}).get("aggregation", "sum")
        s = stats.get(metric)
        if s is None:
            value = Decimal(0)
        elif aggregation == "sum":
            value = Decimal(str(s["sum"])) * scale
        elif aggregation == "count":
            value = Decimal(int(s["count"])) * scale
        elif aggregation == "max":
            value = Decimal(str(s["max"]))
        else:  # latest
            value = Decimal(str(s["latest"][2]))
        # an estimate: two decimals say all it knows
        out[metric] = format(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")
    return out


def prepaid_summary(record: dict[str, Any], running: dict[str, Any] | None,
                    usage: dict[str, Any]) -> dict[str, str] | None:
    """A funded contract's balance against the cost to date (ADR 0043, 0051): every committed batch draws
    the balance down in real time, so `drawn` is what this period has taken so far and `undrawn` what its
    cost to date is still owed beyond that (when the balance ran out); `available` = balance - undrawn,
    never below zero. None for contracts never funded."""
    if not isinstance(record, dict) or not record.get("movements"):
        return None
    balance = Decimal(str(record["balance"]))
    cost = Decimal(str((usage.get("cost") or {}).get("total") or "0"))
    run = (running or {}).get("running") or {}
    drawn = Decimal(str(run.get("drawn") or "0"))
    undrawn = max(cost - drawn, Decimal(0)) if not run.get("closed_by") else Decimal(0)
    out = {"balance": record["balance"], "cost_to_date": str(cost), "drawn": str(drawn),
           "undrawn": str(undrawn), "available": str(max(balance - undrawn, Decimal(0))),
           "covers_cost_to_date": str(balance >= undrawn).lower()}
    if record.get("low"):
        out["low_balance"] = "true"
    return out


def billing_summary(view: dict[str, Any]) -> dict[str, Any]:
    """Progressive billing (ADR 0051): the threshold, what interim invoices billed this period so far, and
    what the cost to date holds beyond that (from the ledger's GetRunning answer)."""
    run = view.get("running") or {}
    billed = run.get("billed") or {}
    return {"threshold": view.get("billing_threshold"), "billed": billed.get("total", "0"),
            "unbilled": view.get("unbilled", "0"), "interim_invoices": run.get("interims", [])}
