"""Rating a period that spans plan versions (amendments, ADR 0046).

A contract's plan versions follow each other at instants (`effective_from`); a period is cut at those
instants (and at an end agreed by amendment) into segments, each rated under its own version:

* readings are assigned by their timestamp (before the instant: the old version; at or after it: the new);
* flat fees, the minimum commitment and the maximum (cap) of a segment are the version's amounts times the
  segment's share of the period's seconds, as instants (so a DST month has its 743 or 745 hours), each
  rounded once, half-up, to the currency's minor unit (exact rational arithmetic, no intermediate rounding);
* metered charges, tiers and packages are not prorated: a segment's quantity is priced by its version;
* consecutive versions with the same pricing are one segment (an amendment that changes nothing changes
  nothing: `tests/unit/test_proration_properties.py`);
* tax is charged once on the invoice's subtotal (amendments cannot change the tax terms).

A contract that was never amended has no `versions` field and is rated exactly as before (`rated_body`).
Pure and deterministic: no clock, no floats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from chaincode import rating
from chaincode.money import EXACT, ZERO, format_decimal, minor_units

# The fields of a plan an amendment may change; every other field of the contract is fixed for its life.
PRICING_KEYS = ("charges", "minimum_commitment", "maximum")
_US = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Segment:
    """[start, end) of a period under one pricing (`versions`: the plan versions merged into it)."""

    start: dt.datetime
    end: dt.datetime
    versions: tuple[int, ...]
    pricing: Mapping[str, Any]

    @property
    def version(self) -> int:
        return self.versions[0]


def pricing_of(contract: Mapping[str, Any]) -> dict[str, Any]:
    """The pricing fields of a contract record (absent optional fields as None)."""
    return {k: contract.get(k) for k in PRICING_KEYS}


def plan_shaped(contract: Mapping[str, Any]) -> bool:
    """Whether some version has charges whose batch aggregates depend on the plan they were recorded
    under (time_of_use buckets, dynamic sums are kept per charge id): such contracts are rated from their
    readings, so a batch recorded just before an acceptance cannot be read under the wrong version."""
    return any(
        isinstance(c, dict) and c.get("model") in ("time_of_use", "dynamic")
        for v in contract.get("versions") or []
        for c in (v.get("plan") or {}).get("charges") or []
    )


def stored_reading(record: Mapping[str, Any]) -> rating.ReadingIn:
    """A reading as stored on the ledger, parsed without rehashing it (no digest)."""
    up = record.get("unit_price")
    return rating.ReadingIn(
        id=str(record["id"]),
        metric=str(record["metric"]),
        quantity=rating.parse_quantity(record["quantity"]),
        timestamp=rating.parse_timestamp(record["timestamp"]),
        unit_price=None if up is None else rating.parse_unit_price(up),
        device_id=str(record.get("device_id", "")),
    )


def version_plan(contract: Mapping[str, Any], pricing: Mapping[str, Any]) -> rating.Plan:
    """The `Plan` of a version: the contract's fixed terms with the version's pricing."""
    return rating.parse_plan({**contract, **pricing})


def effective_end(contract: Mapping[str, Any], plan: rating.Plan) -> dt.datetime | None:
    """The instant the contract ends when an amendment ended it (segments stop there); else None."""
    if not contract.get("ended_by"):
        return None
    return rating.contract_bounds(plan)[1]


def segments(contract: Mapping[str, Any], plan: rating.Plan, period: str) -> list[Segment]:
    """The period's segments, in time order, merging consecutive versions with equal pricing. Version 1
    is in force from before the contract's start, so only amendments (and an amended end) cut a period."""
    p_start, p_end = rating.period_bounds(period, plan.timezone)
    end = effective_end(contract, plan)
    if end is not None:
        p_end = min(p_end, end)
    versions = list(contract.get("versions") or [])
    out: list[Segment] = []
    for i, v in enumerate(versions):
        start = rating.parse_timestamp(v["effective_from"]) if v.get("effective_from") else None
        nxt = versions[i + 1].get("effective_from") if i + 1 < len(versions) else None
        until = rating.parse_timestamp(nxt) if nxt else None
        s = p_start if start is None else max(p_start, start)
        e = p_end if until is None else min(p_end, until)
        if s >= e:
            continue
        if out and dict(out[-1].pricing) == dict(v["plan"]) and out[-1].end == s:
            last = out[-1]
            out[-1] = Segment(last.start, e, (*last.versions, v["version"]), last.pricing)
        else:
            out.append(Segment(s, e, (v["version"],), v["plan"]))
    return out


def prorate(amount: Decimal, part: int, whole: int, currency: str) -> Decimal:
    """amount x part / whole, rounded once half-up to the currency's minor unit (exact arithmetic)."""
    exact = Fraction(amount) * part / whole
    scale = 10 ** minor_units(currency)
    scaled = exact * scale
    floor = scaled.numerator // scaled.denominator
    rounded = floor + 1 if scaled - floor >= Fraction(1, 2) else floor
    return Decimal(rounded).scaleb(-minor_units(currency))


def prorated_plan(plan: rating.Plan, part: int, whole: int) -> rating.Plan:
    """The plan with its flat fees, minimum commitment and maximum scaled to `part / whole` of a period."""
    cur = plan.currency
    charges = tuple(
        dataclasses.replace(c, amount=prorate(c.amount, part, whole, cur))
        if c.model == "flat" and c.amount is not None
        else c
        for c in plan.charges
    )
    return dataclasses.replace(
        plan,
        charges=charges,
        minimum_commitment=None
        if plan.minimum_commitment is None
        else prorate(plan.minimum_commitment, part, whole, cur),
        maximum=None if plan.maximum is None else prorate(plan.maximum, part, whole, cur),
    )


def versioned_line(line: dict[str, Any], version: int) -> dict[str, Any]:
    """An invoice line of an amended contract: it names its plan version (also in words, for ERPs and
    e-invoices that show a line's description)."""
    return {**line, "plan_version": version, "description": f"{line['charge_id']} (plan version {version})"}


def _us(delta: dt.timedelta) -> int:
    return delta // _US


def rate_segments(
    contract: Mapping[str, Any],
    plan: rating.Plan,
    period: str,
    segs: Sequence[Segment],
    readings: Iterable[rating.ReadingIn],
) -> tuple[list[dict[str, Any]], Decimal, list[dict[str, Any]]]:
    """Rate each segment under its version: (lines, subtotal, segment descriptions). Each line names its
    `plan_version`; `readings` are the period's readings (each goes to the segment holding its instant)."""
    p_start, p_end = rating.period_bounds(period, plan.timezone)
    whole = _us(p_end - p_start)
    buckets: list[list[rating.ReadingIn]] = [[] for _ in segs]
    for r in readings:
        for i, s in enumerate(segs):
            if s.start <= r.timestamp < s.end:
                buckets[i].append(r)
                break
    lines: list[dict[str, Any]] = []
    described: list[dict[str, Any]] = []
    subtotal = ZERO
    for s, bucket in zip(segs, buckets, strict=True):
        part = _us(s.end - s.start)
        vplan = prorated_plan(version_plan(contract, s.pricing), part, whole)
        vplan = dataclasses.replace(vplan, tax_rate=None)  # tax once, on the invoice's subtotal
        agg = rating.batch_aggregate(vplan, bucket)
        rated = rating.rate(vplan, agg)
        with localcontext(EXACT):
            subtotal += rated.subtotal
        for line in rated.to_json()["lines"]:
            lines.append(versioned_line(line, s.version))
        described.append({
            "versions": list(s.versions),
            "from": rating.format_timestamp(s.start),
            "until": rating.format_timestamp(s.end),
            "seconds": format_decimal(Decimal(part) / Decimal(1_000_000)),
            "period_seconds": format_decimal(Decimal(whole) / Decimal(1_000_000)),
            "readings": len(bucket),
        })
    return lines, subtotal, described
