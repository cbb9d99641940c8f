"""Batch aggregates of readings and their exact merge (ADR 0003).

The chaincode never re-reads every reading of a period to close it: each `RecordUsage` transaction stores
one `BatchAggregate` per (contract, period) it touched, and closing merges those (`merge`) and rates the
result (`chaincode.rating.rate`). For that to be safe the merge must be exact, associative and
commutative, so the invoice is the same whatever order readings arrived in and however they were split
into transactions:

* sums are exact `Decimal` additions (the context traps `Inexact`): exact addition is associative and its
  exponent is the smallest of the operands', so even the representation ("30.00") is order-free;
* `max` and `latest` pick by a total order that also ranks equal values with different representations
  ("2" < "2.0": more fraction digits wins), so ties cannot depend on order;
* the readings digest is a multiset hash (`chaincode.digests`), order- and split-free.

Pure and deterministic: no clock, no floats, no randomness, no iteration over unordered sets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from chaincode.digests import combine_digests, digest_hex, parse_digest, reading_hash
from chaincode.money import EXACT, ZERO, format_decimal, parse_plain_decimal, parse_quantity, parse_unit_price
from chaincode.periods import format_timestamp, parse_period, parse_timestamp, period_bounds, period_of
from chaincode.plan import Plan, tou_window

__all__ = [
    "BatchAggregate", "MetricStats", "ReadingIn", "TouBuckets", "batch_aggregate", "merge",
    "reading_from_record",
]  # fmt: skip


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
