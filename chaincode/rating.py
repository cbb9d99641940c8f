"""Rating: the priced invoice lines of a period, from its merged batch aggregate.

`rate` prices each charge of the plan once, exactly, and rounds it once (half-up, minor units); then the
`maximum` cap, the `minimum_commitment` true-up, tax and total. The aggregates it prices are built and
merged in `chaincode.aggregate` (readings digest: `chaincode.digests`); the plan's charge models (tiers,
packages, time-of-use windows) are in `chaincode.plan`.

Pure and deterministic: no clock, no floats, no randomness, no iteration over unordered sets.
This module re-exports the aggregate, digest, plan, money and period helpers so callers import one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from chaincode.aggregate import (
    BatchAggregate,
    MetricStats,
    ReadingIn,
    TouBuckets,
    batch_aggregate,
    merge,
    reading_from_record,
)
from chaincode.digests import DIGEST_MODULUS, combine_digests, digest_hex, parse_digest, reading_hash
from chaincode.money import (
    EXACT,
    ONE,
    ZERO,
    UnknownCurrency,
    format_decimal,
    format_money,
    known_currencies,
    minor_units,
    parse_quantity,
    parse_unit_price,
    round_money,
)
from chaincode.periods import (
    UnknownTimezone,
    format_timestamp,
    next_period,
    parse_period,
    parse_timestamp,
    period_bounds,
    period_of,
    previous_period,
)
from chaincode.plan import (
    Charge,
    Metric,
    Plan,
    PlanError,
    Tier,
    Window,
    contract_bounds,
    graduated_amount,
    package_count,
    parse_plan,
    tou_window,
    validate_plan,
    volume_tier,
)

__all__ = [
    "DIGEST_MODULUS", "BatchAggregate", "Charge", "Line", "Metric", "MetricStats", "Plan", "PlanError",
    "Rated", "ReadingIn", "Tier", "TouBuckets", "UnknownCurrency", "UnknownTimezone", "Window",
    "batch_aggregate", "combine_digests", "contract_bounds", "digest_hex", "format_decimal", "format_money",
    "format_timestamp", "known_currencies", "merge", "metric_quantity", "minor_units", "next_period",
    "parse_digest", "parse_period", "parse_plan", "parse_quantity", "parse_timestamp", "parse_unit_price",
    "period_bounds", "period_of", "previous_period", "rate", "reading_from_record", "reading_hash",
    "round_money", "tou_window", "validate_plan",
]  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One invoice line. `quantity`: flat 1; per_unit/graduated/volume/package the metric's aggregate;
    time_of_use/dynamic the summed quantity of the priced readings; true-up and cap 1."""

    charge_id: str
    model: str
    metric: str | None
    quantity: Decimal
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"charge_id": self.charge_id, "model": self.model}
        if self.metric is not None:
            out["metric"] = self.metric
        out["quantity"] = format_decimal(self.quantity)
        out["amount"] = format_decimal(self.amount)
        return out


@dataclass(frozen=True)
class Rated:
    """The rated period: lines (plan order, then cap, then true-up), pre-tax subtotal, tax, total."""

    lines: tuple[Line, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    currency: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": [line.to_json() for line in self.lines],
            "subtotal": format_decimal(self.subtotal),
            "tax": format_decimal(self.tax),
            "total": format_decimal(self.total),
        }


def metric_quantity(plan: Plan, agg: BatchAggregate, metric: str) -> Decimal:
    """The quantity a metric's aggregation gives for the period (0 when it has no readings)."""
    stats = agg.metrics.get(metric)
    if stats is None:
        return ZERO
    aggregation = plan.metrics[metric].aggregation
    if aggregation == "sum":
        return stats.sum
    if aggregation == "max":
        return stats.max
    if aggregation == "count":
        return Decimal(stats.count)
    return stats.latest[2]  # latest


def _charge_amount(plan: Plan, agg: BatchAggregate, c: Charge) -> tuple[Decimal, Decimal]:
    """(quantity, exact amount) of one charge."""
    if c.model == "flat":
        assert c.amount is not None
        return ONE, c.amount
    assert c.metric is not None
    if c.model == "time_of_use":
        stats = agg.metrics.get(c.metric)
        buckets = agg.time_of_use.get(c.id)
        if buckets is None:
            if stats is not None:
                raise ValueError(f"aggregate lacks time_of_use buckets for charge {c.id!r}")
            return ZERO, ZERO
        if len(buckets.windows) != len(c.windows):
            raise ValueError(f"time_of_use buckets of {c.id!r} do not match the plan's windows")
        assert c.default_unit_price is not None
        amount = buckets.default * c.default_unit_price
        quantity = buckets.default
        for w, q in zip(c.windows, buckets.windows, strict=True):
            amount += q * w.unit_price
            quantity += q
        return quantity, amount
    if c.model == "dynamic":
        stats = agg.metrics.get(c.metric)
        amount = agg.dynamic.get(c.id)
        if amount is None:
            if stats is not None:
                raise ValueError(f"aggregate lacks the dynamic amount for charge {c.id!r}")
            return ZERO, ZERO
        return (stats.sum if stats is not None else ZERO), amount
    q = metric_quantity(plan, agg, c.metric)
    if c.model == "per_unit":
        assert c.unit_price is not None
        return q, q * c.unit_price
    if c.model == "graduated":
        return q, graduated_amount(c.tiers, q)
    if c.model == "volume":
        return q, q * volume_tier(c.tiers, q).unit_price
    if c.model == "package":
        assert c.package_size is not None and c.package_price is not None
        return q, package_count(q, c.package_size) * c.package_price
    raise ValueError(f"unknown model {c.model!r}")  # pragma: no cover - parse_plan refuses it


def rate(plan: Plan, agg: BatchAggregate) -> Rated:
    """Price a period. Each charge gives one line, computed exactly and rounded once (half-up, minor
    units). Then: `maximum` caps the sum of the metered lines (every model but flat) with one negative
    `maximum_cap` line; `minimum_commitment` tops the resulting subtotal up with a
    `minimum_commitment_true_up` line; tax = round(subtotal x rate); total = subtotal + tax."""
    cur = plan.currency
    lines: list[Line] = []
    with localcontext(EXACT):
        for c in plan.charges:
            quantity, amount = _charge_amount(plan, agg, c)
            lines.append(Line(c.id, c.model, c.metric, quantity, round_money(amount, cur)))
        if plan.maximum is not None:
            metered = sum((ln.amount for ln in lines if ln.model != "flat"), ZERO)
            if metered > plan.maximum:
                cap = round_money(plan.maximum - metered, cur)
                lines.append(Line("maximum_cap", "maximum", None, ONE, cap))
        subtotal = sum((ln.amount for ln in lines), ZERO)
        if plan.minimum_commitment is not None and subtotal < plan.minimum_commitment:
            true_up = round_money(plan.minimum_commitment - subtotal, cur)
            lines.append(Line("minimum_commitment_true_up", "minimum_commitment", None, ONE, true_up))
            subtotal += true_up
        subtotal = round_money(subtotal, cur)
        tax = round_money(subtotal * plan.tax_rate if plan.tax_rate is not None else ZERO, cur)
        total = round_money(subtotal + tax, cur)
    return Rated(lines=tuple(lines), subtotal=subtotal, tax=tax, total=total, currency=cur)
