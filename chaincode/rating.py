"""Rating: batch aggregates of readings, their exact merge, and the priced invoice lines.

The chaincode never re-reads every reading of a period to close it: each `RecordUsage` transaction stores
one `BatchAggregate` per (contract, period) it touched, and closing merges those and rates the result. For
that to be safe the merge must be exact, associative and commutative, so the invoice is the same whatever
order readings arrived in and however they were split into transactions (ADR 0003):

* sums are exact `Decimal` additions (the context traps `Inexact`): exact addition is associative and its
  exponent is the smallest of the operands', so even the representation ("30.00") is order-free;
* `max` and `latest` pick by a total order that also ranks equal values with different representations
  ("2" < "2.0": more fraction digits wins), so ties cannot depend on order;
* the readings digest is a sum of SHA-256 values mod 2^256 (a multiset hash), order- and split-free.

Pure and deterministic: no clock, no floats, no randomness, no iteration over unordered sets.
This module re-exports the plan, money and period helpers so callers import one module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

import rfc8785

from chaincode.money import (
    EXACT,
    ONE,
    ZERO,
    UnknownCurrency,
    format_decimal,
    format_money,
    known_currencies,
    minor_units,
    parse_plain_decimal,
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
    "BatchAggregate", "Charge", "Line", "Metric", "MetricStats", "Plan", "PlanError", "Rated", "ReadingIn",
    "Tier", "UnknownCurrency", "UnknownTimezone", "Window", "batch_aggregate", "combine_digests",
    "contract_bounds", "digest_hex", "format_decimal", "format_money", "format_timestamp", "known_currencies",
    "merge", "minor_units", "next_period", "parse_digest", "parse_period", "parse_plan", "parse_quantity",
    "parse_timestamp", "parse_unit_price", "period_bounds", "period_of", "previous_period", "rate",
    "reading_from_record", "reading_hash", "round_money", "tou_window", "validate_plan",
]  # fmt: skip

DIGEST_MODULUS = 2**256
_HASHED_FIELDS = ("id", "device_id", "metric", "quantity", "timestamp")


# --------------------------------------------------------------------------------------------- digests


def reading_hash(reading: Mapping[str, Any]) -> int:
    """SHA-256 (as an int) of the RFC 8785 canonical JSON of the reading's identifying fields.

    Hashed: "id", "device_id", "metric", "quantity", "timestamp" and, when present and not null,
    "unit_price" -- exactly as the device sent them (strings), so an auditor can recompute it from the
    signed usage message. Other fields of a stored reading record (tx_id, period, ...) are ignored.
    """
    body: dict[str, Any] = {}
    for key in _HASHED_FIELDS:
        if key not in reading:
            raise ValueError(f"reading lacks {key!r}")
        body[key] = reading[key]
    if reading.get("unit_price") is not None:
        body["unit_price"] = reading["unit_price"]
    return int.from_bytes(hashlib.sha256(rfc8785.dumps(body)).digest(), "big")


def combine_digests(values: Iterable[int]) -> int:
    """Multiset hash: the sum of the values mod 2^256 (order- and grouping-independent)."""
    total = 0
    for v in values:
        total = (total + v) % DIGEST_MODULUS
    return total


def digest_hex(value: int) -> str:
    """64 lowercase hex characters."""
    if not 0 <= value < DIGEST_MODULUS:
        raise ValueError("digest out of range")
    return format(value, "064x")


def parse_digest(text: object) -> int:
    """Inverse of `digest_hex`."""
    if not isinstance(text, str) or len(text) != 64 or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError("digest must be 64 lowercase hex characters")
    return int(text, 16)


# --------------------------------------------------------------------------------------------- readings


@dataclass(frozen=True)
class ReadingIn:
    """One reading as the rater sees it. `digest` is its `reading_hash` when the caller has it (see
    `reading_from_record`); `batch_aggregate` combines those into the batch digest. A reading's identity
    is (`device_id`, `id`): devices number their own readings (ADR 0026)."""

    id: str
    metric: str
    quantity: Decimal
    timestamp: dt.datetime
    unit_price: Decimal | None = None
    digest: int | None = None
    device_id: str = ""


def reading_from_record(record: Mapping[str, Any]) -> ReadingIn:
    """Parse a reading as stored/sent (strings; needs "device_id" for the hash) into a `ReadingIn` with
    its digest. Raises ValueError on a bad quantity, timestamp or unit_price."""
    up = record.get("unit_price")
    return ReadingIn(
        id=str(record["id"]),
        metric=str(record["metric"]),
        quantity=parse_quantity(record["quantity"]),
        timestamp=parse_timestamp(record["timestamp"]),
        unit_price=None if up is None else parse_unit_price(up),
        digest=reading_hash(record),
        device_id=str(record.get("device_id", "")),
    )


# --------------------------------------------------------------------------------------------- aggregates


def _rank(value: Decimal) -> tuple[Decimal, int]:
    """Total order on decimals: by value, then more fraction digits first ("2" < "2.0")."""
    return value, -int(value.as_tuple().exponent)


@dataclass
class MetricStats:
    """Aggregates of one metric's readings. `latest` = (instant, reading id, quantity), greatest wins."""

    sum: Decimal
    max: Decimal
    count: int
    latest: tuple[dt.datetime, str, Decimal]

    def _latest_key(self) -> tuple[dt.datetime, str, Decimal, int]:
        ts, rid, q = self.latest
        return (ts, rid, *_rank(q))

    def merged(self, other: MetricStats) -> MetricStats:
        with localcontext(EXACT):
            return MetricStats(
                sum=self.sum + other.sum,
                max=max(self.max, other.max, key=_rank),
                count=self.count + other.count,
                latest=max(self, other, key=MetricStats._latest_key).latest,
            )

    def to_json(self) -> dict[str, Any]:
        ts, rid, q = self.latest
        return {
            "sum": format_decimal(self.sum),
            "max": format_decimal(self.max),
            "count": self.count,
            "latest": [format_timestamp(ts), rid, format_decimal(q)],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MetricStats:
        latest = d["latest"]
        if not isinstance(latest, list) or len(latest) != 3 or not isinstance(latest[1], str):
            raise ValueError("latest must be [timestamp, reading_id, quantity]")
        ts, rid, q = latest
        count = d["count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer")
        return cls(
            sum=_dec(d["sum"]),
            max=_dec(d["max"]),
            count=count,
            latest=(parse_timestamp(ts).astimezone(dt.UTC), rid, _dec(q)),
        )


def _dec(text: object) -> Decimal:
    """A stored aggregate decimal: plain, non-negative (as `format_decimal` wrote it), else ValueError."""
    return parse_plain_decimal(text, max_value=None, max_fraction_digits=None, what="aggregate value")


@dataclass
class TouBuckets:
    """Quantity of one time_of_use charge per window index, plus what fell in no window (`default`)."""

    windows: list[Decimal]
    default: Decimal

    def merged(self, other: TouBuckets) -> TouBuckets:
        if len(self.windows) != len(other.windows):
            raise ValueError("time_of_use aggregates with different window counts")
        with localcontext(EXACT):
            return TouBuckets(
                windows=[a + b for a, b in zip(self.windows, other.windows, strict=True)],
                default=self.default + other.default,
            )

    def to_json(self) -> dict[str, Any]:
        return {"windows": [format_decimal(w) for w in self.windows], "default": format_decimal(self.default)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TouBuckets:
        windows = d["windows"]
        if not isinstance(windows, list):
            raise ValueError("windows must be a list")
        return cls(windows=[_dec(w) for w in windows], default=_dec(d["default"]))


@dataclass
class BatchAggregate:
    """What one transaction contributes to one (contract, period); `merge` combines them exactly.

    `metrics`: stats per metric that has readings; `time_of_use`: buckets per time_of_use charge whose
    metric has readings; `dynamic`: exact sum(quantity x unit_price) per dynamic charge whose metric has
    readings; `readings`: count; `digest`: combine_digests of the readings' `reading_hash`; `period`: the
    period of the readings (None for an empty aggregate).
    """

    metrics: dict[str, MetricStats] = field(default_factory=dict)
    time_of_use: dict[str, TouBuckets] = field(default_factory=dict)
    dynamic: dict[str, Decimal] = field(default_factory=dict)
    readings: int = 0
    digest: int = 0
    period: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metrics": {k: v.to_json() for k, v in sorted(self.metrics.items())},
            "time_of_use": {k: v.to_json() for k, v in sorted(self.time_of_use.items())},
            "dynamic": {k: format_decimal(v) for k, v in sorted(self.dynamic.items())},
            "readings": self.readings,
            "digest": digest_hex(self.digest),
        }
        if self.period is not None:
            out["period"] = self.period
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchAggregate:
        try:
            readings = d["readings"]
            if not isinstance(readings, int) or isinstance(readings, bool) or readings < 0:
                raise ValueError("readings must be a non-negative integer")
            period = d.get("period")
            if period is not None:
                parse_period(period)
            agg = cls(
                metrics={str(k): MetricStats.from_json(v) for k, v in d.get("metrics", {}).items()},
                time_of_use={str(k): TouBuckets.from_json(v) for k, v in d.get("time_of_use", {}).items()},
                dynamic={str(k): _dec(v) for k, v in d.get("dynamic", {}).items()},
                readings=readings,
                digest=parse_digest(d["digest"]),
                period=period,
            )
            # every reading counts towards exactly one metric
            if sum(m.count for m in agg.metrics.values()) != readings:
                raise ValueError("metric counts do not add up to the readings count")
            if (period is None) != (readings == 0):
                raise ValueError("a non-empty aggregate has a period, an empty one none")
            return agg
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed batch aggregate: {exc!r}") from None


def batch_aggregate(plan: Plan, readings: Iterable[ReadingIn]) -> BatchAggregate:
    """Aggregate the readings of ONE contract and ONE period (the caller has validated and deduplicated
    them against the ledger).

    Digest: when every reading carries `digest` (see `reading_from_record`) the batch digest is their
    combination; when none does it is 0 and the caller sets `agg.digest = combine_digests(...)` itself;
    a mix is refused. Raises ValueError for an undeclared metric, a dynamic reading without unit_price,
    readings of different periods, or the same reading (device id, reading id) twice.
    """
    agg = BatchAggregate()
    seen: set[tuple[str, str]] = set()
    digests: list[int] = []
    without_digest = 0
    tou = [c for c in plan.charges if c.model == "time_of_use"]
    dyn = [c for c in plan.charges if c.model == "dynamic"]
    metrics = plan.metrics
    timezone = plan.timezone
    # per metric [sum, max, max rank, count, latest key (instant, id, quantity rank), latest quantity]:
    # folded in place with exactly the choices `MetricStats.merged` makes (running sum from the first
    # quantity, the first of equal-ranked maxima, the greatest (instant, id, quantity rank) for latest: two
    # devices may send the same id at the same instant, and the quantity then decides, whatever the order),
    # without building two objects per reading (the profile's largest item in RecordUsage)
    acc: dict[str, list[Any]] = {}
    bounds: tuple[dt.datetime, dt.datetime] | None = None  # of agg.period, set by the first reading
    with localcontext(EXACT):
        for r in readings:
            rid = r.id
            identity = (r.device_id, rid)
            if identity in seen:
                raise ValueError(f"reading {rid!r} of device {r.device_id!r} appears twice in one batch")
            seen.add(identity)
            if r.metric not in metrics:
                raise ValueError(f"reading {rid!r}: metric {r.metric!r} is not in the plan")
            q = r.quantity
            if not q.is_finite() or q < ZERO:
                raise ValueError(f"reading {rid!r}: quantity must be a non-negative decimal")
            ts = r.timestamp
            # period_of is computed from period_bounds, so an instant inside the bounds of the batch's
            # period is in that period: one comparison instead of a timezone conversion per reading
            try:
                inside = bounds is not None and bounds[0] <= ts < bounds[1]
            except TypeError:  # a naive instant: period_of refuses it with its own message
                inside = False
            if not inside:
                period = period_of(ts, timezone)
                if agg.period is None:
                    agg.period = period
                    bounds = period_bounds(period, timezone)
                elif period != agg.period:
                    raise ValueError(f"reading {rid!r} is in {period}, the batch in {agg.period}")
            if r.digest is None:
                without_digest += 1
            else:
                digests.append(r.digest)
            rank = (q, -int(q.as_tuple().exponent))
            latest = (ts, rid, rank)
            a = acc.get(r.metric)
            if a is None:
                acc[r.metric] = [q, q, rank, 1, latest, q]
            else:
                a[0] = a[0] + q
                if rank > a[2]:
                    a[1], a[2] = q, rank
                a[3] += 1
                if latest > a[4]:
                    a[4], a[5] = latest, q
            for c in tou:
                if c.metric != r.metric:
                    continue
                buckets = agg.time_of_use.setdefault(c.id, TouBuckets([ZERO] * len(c.windows), ZERO))
                i = tou_window(c, ts, timezone)
                if i < 0:
                    buckets.default += q
                else:
                    buckets.windows[i] += q
            for c in dyn:
                if c.metric != r.metric:
                    continue
                if r.unit_price is None:
                    raise ValueError(f"reading {rid!r}: metric {r.metric!r} needs a unit_price")
                agg.dynamic[c.id] = agg.dynamic.get(c.id, ZERO) + q * r.unit_price
            agg.readings += 1
    for metric, (total, biggest, _, count, (ts, rid, _), q) in acc.items():
        agg.metrics[metric] = MetricStats(sum=total, max=biggest, count=count, latest=(ts, rid, q))
    if digests and without_digest:
        raise ValueError("either every reading carries its digest or none does")
    agg.digest = combine_digests(digests)
    # Canonical timestamps for `latest` (UTC), so the aggregate is the same whatever offset was sent.
    for stats in agg.metrics.values():
        ts, rid, q = stats.latest
        stats.latest = (ts.astimezone(dt.UTC), rid, q)
    return agg


def merge(aggs: Iterable[BatchAggregate]) -> BatchAggregate:
    """Combine batch aggregates of one (contract, period): exact, associative and commutative."""
    out = BatchAggregate()
    for a in aggs:
        if a.period is not None:
            if out.period is not None and out.period != a.period:
                raise ValueError(f"cannot merge aggregates of {out.period} and {a.period}")
            out.period = a.period
        for name, stats in a.metrics.items():
            prev = out.metrics.get(name)
            out.metrics[name] = stats if prev is None else prev.merged(stats)
        for cid, buckets in a.time_of_use.items():
            prevb = out.time_of_use.get(cid)
            out.time_of_use[cid] = (
                TouBuckets(list(buckets.windows), buckets.default) if prevb is None else prevb.merged(buckets)
            )
        with localcontext(EXACT):
            for cid, amount in a.dynamic.items():
                out.dynamic[cid] = out.dynamic[cid] + amount if cid in out.dynamic else amount
        out.readings += a.readings
        out.digest = combine_digests((out.digest, a.digest))
    return out


# --------------------------------------------------------------------------------------------- rating


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
