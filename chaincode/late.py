"""Late readings (ADR 0048): a reading for a closed period, billed on the contract's next invoice.

A contract states its policy in `late_readings`: absent or `{"policy": "reject"}` keeps the old rule (a
new reading for a closed period is `period_closed`); `{"policy": "next_invoice", "max_lateness": "P35D"}`
records a reading for a closed period when it is at most `max_lateness` old (the recording transaction's
time minus the reading's timestamp), else refuses it with `reading_too_late`.

A late reading keeps its place: its key is that of the period it belongs to (so a resend is a duplicate
wherever it is billed) and its record says `"billed_in": B`, the first period after the contract's last
closed one. Its batch aggregate goes to `lateusage~{contract}~{B}~{period}~{tx_id}`, never to the closed
period's usage batches, so the closed invoice and its proof never change. Closing B rates each late
period's readings with the plan of the period they belong to and adds one line per metered charge, marked
`"late_of": "2026-09"` and described "late usage 2026-09"; flat fees, the cap and the minimum commitment
were settled with the closed invoice and are not charged again. Tax is recomputed on the new subtotal.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from chaincode import proration, rating
from chaincode.errors import ChaincodeError
from chaincode.money import ZERO, format_decimal, round_money
from chaincode.periods import next_period
from chaincode.stub import create_composite_key, split_composite_key

LATE_USAGE = "lateusage"
FIELD = "late_readings"
REJECT, NEXT_INVOICE = "reject", "next_invoice"
_DURATION = re.compile(r"P([0-9]{1,3})D")
MAX_DAYS = 366
# lines the rater adds itself: settled with the closed invoice, never billed again for late usage
_NOT_BILLED_LATE = {"flat", "maximum", "minimum_commitment"}


def check_policy(contract: Mapping[str, Any]) -> None:
    """Refuse a malformed `late_readings` at proposal (`invalid_argument`, field `late_readings`)."""
    policy(contract)


def policy(contract: Mapping[str, Any]) -> tuple[str, int]:
    """(`reject` | `next_invoice`, max lateness in days) of a contract record."""
    raw = contract.get(FIELD)
    if raw is None:
        return REJECT, 0

    def bad(message: str) -> ChaincodeError:
        return ChaincodeError("invalid_argument", f"late_readings: {message}", field=FIELD)

    if not isinstance(raw, dict) or set(raw) - {"policy", "max_lateness"}:
        raise bad('must be {"policy": "reject"} or {"policy": "next_invoice", "max_lateness": "P35D"}')
    kind = raw.get("policy")
    if kind == REJECT:
        if "max_lateness" in raw:
            raise bad("max_lateness applies to the next_invoice policy only")
        return REJECT, 0
    if kind != NEXT_INVOICE:
        raise bad(f"policy must be {REJECT!r} or {NEXT_INVOICE!r}")
    text = raw.get("max_lateness")
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if m is None or not 1 <= int(m.group(1)) <= MAX_DAYS:
        raise bad(f"max_lateness must be an ISO 8601 duration in days, P1D to P{MAX_DAYS}D")
    return NEXT_INVOICE, int(m.group(1))


def route(
    contract: Mapping[str, Any], now: Any, late: list[tuple[str, Any, str]]
) -> dict[str, str]:
    """Where the fresh readings of closed periods go: reading id -> billing period, or a refusal.

    `late`: (reading id, timestamp, period) of each such reading; `now`: the transaction's time."""
    kind, days = policy(contract)
    ids = [rid for rid, _, _ in late]
    if kind == REJECT:
        raise ChaincodeError(
            "period_closed", "readings for a closed period", reading_ids=ids,
            readings=[
                {"reading_id": rid, "code": "period_closed", "message": "period is closed"} for rid in ids
            ],
        )
    limit = dt.timedelta(days=days)
    too_late = [rid for rid, ts, _ in late if now - ts > limit]
    if too_late:
        message = f"older than the contract's max_lateness of {days} days"
        raise ChaincodeError(
            "reading_too_late", f"{len(too_late)} reading(s) {message}", reading_ids=too_late,
            max_lateness=f"P{days}D",
            readings=[
                {"reading_id": rid, "code": "reading_too_late", "message": message} for rid in too_late
            ],
        )
    last = contract.get("last_closed_period")
    assert isinstance(last, str)  # a period is closed, so the contract records the last one closed
    billed_in = next_period(last)
    return {rid: billed_in for rid in ids}


def late_key(contract_id: str, billed_in: str, period: str, tx_id: str) -> str:
    """`lateusage~{contract}~{billed_in}~{period}~{tx_id}`: one transaction's late usage of `period`."""
    return create_composite_key(LATE_USAGE, [contract_id, billed_in, period, tx_id])


ReadingsOf = Callable[[str], Iterable[rating.ReadingIn]]


def lines(
    plan: rating.Plan,
    aggs: Mapping[str, rating.BatchAggregate],
    contract: Mapping[str, Any] | None = None,
    readings_of: ReadingsOf | None = None,
) -> list[dict[str, Any]]:
    """Invoice lines for late usage: per late period (in order), its metered charges' lines with a
    quantity, rated exactly as that period's own invoice rates them. A contract never amended rates with
    `plan`; an amended one (`contract` with `versions`) with the version(s) in force in the late period:
    one version over the whole period -> its plan on the aggregate; a period cut by an amendment (or a
    plan-shaped contract) -> each reading of `readings_of(period)` under the version at its instant.
    Lines of an amended contract name their `plan_version`."""
    out: list[dict[str, Any]] = []
    for period in sorted(aggs):
        if contract is None or not contract.get("versions"):
            rated = [(None, ln) for ln in rating.rate(plan, aggs[period]).lines]
        else:
            rated = _versioned(contract, plan, period, aggs[period], readings_of)
        for version, line in rated:
            if line.model in _NOT_BILLED_LATE or line.quantity == 0:
                continue
            item = {**line.to_json(), "late_of": period, "description": f"late usage {period}"}
            if version is not None:
                item["plan_version"] = version
                item["description"] = f"late usage {period} (plan version {version})"
            out.append(item)
    return out


def _versioned(
    contract: Mapping[str, Any], plan: rating.Plan, period: str, agg: rating.BatchAggregate,
    readings_of: ReadingsOf | None,
) -> list[tuple[int | None, Any]]:
    """(plan version, rated line) of a late period of an amended contract (ADR 0048, "Later")."""
    segs = proration.segments(contract, plan, period)
    if not segs:  # outside every version (cannot happen for a recorded reading): the current plan
        return [(None, ln) for ln in rating.rate(plan, agg).lines]
    if len(segs) == 1 and not proration.plan_shaped(contract):
        vplan = proration.version_plan(contract, segs[0].pricing)
        return [(segs[0].version, ln) for ln in rating.rate(vplan, agg).lines]
    if readings_of is None:
        raise ValueError(f"late usage {period} spans plan versions: its readings are needed")
    buckets: list[list[rating.ReadingIn]] = [[] for _ in segs]
    for r in readings_of(period):
        # the segment holding its instant (the first one for an instant before all, which cannot happen)
        i = max((j for j, s in enumerate(segs) if s.start <= r.timestamp), default=0)
        buckets[i].append(r)
    out: list[tuple[int | None, Any]] = []
    for s, bucket in zip(segs, buckets, strict=True):
        if bucket:
            vplan = proration.version_plan(contract, s.pricing)
            rated = rating.rate(vplan, rating.batch_aggregate(vplan, bucket))
            out.extend((s.version, ln) for ln in rated.lines)
    return out


def with_late_lines(
    plan: rating.Plan,
    body: Mapping[str, Any],
    aggs: Mapping[str, rating.BatchAggregate],
    contract: Mapping[str, Any] | None = None,
    readings_of: ReadingsOf | None = None,
) -> dict[str, Any]:
    """The invoice money part `body` (lines, subtotal, tax, total) with the late usage of `aggs` added:
    lines appended, subtotal the sum, tax recomputed on it (half-up, once), total = subtotal + tax.
    Without late usage `body` comes back unchanged."""
    extra = lines(plan, aggs, contract, readings_of)
    if not aggs:
        return dict(body)
    cur = plan.currency
    subtotal = round_money(
        Decimal(body["subtotal"]) + sum((Decimal(ln["amount"]) for ln in extra), ZERO), cur
    )
    tax = round_money(subtotal * plan.tax_rate if plan.tax_rate is not None else ZERO, cur)
    return {
        **body,
        "lines": [*body["lines"], *extra],
        "subtotal": format_decimal(subtotal),
        "tax": format_decimal(tax),
        "total": format_decimal(round_money(subtotal + tax, cur)),
        "late_readings": sum(a.readings for a in aggs.values()),
        "late_readings_digest": rating.digest_hex(rating.combine_digests(a.digest for a in aggs.values())),
    }


def aggregates_by_period(
    plan: rating.Plan, readings: Iterable[rating.ReadingIn]
) -> dict[str, rating.BatchAggregate]:
    """Late readings grouped by the period they belong to, aggregated (the verifier's side)."""
    groups: dict[str, list[rating.ReadingIn]] = {}
    for r in readings:
        groups.setdefault(rating.period_of(r.timestamp, plan.timezone), []).append(r)
    return {p: rating.batch_aggregate(plan, rs) for p, rs in groups.items()}


# --- the ledger side (called from chaincode.tx.usage and chaincode.tx.invoices) ----------------------


def write_batches(tx: Any, late: Mapping[tuple[str, str, str], tuple[rating.Plan, list[rating.ReadingIn]]]
                  ) -> list[dict[str, Any]]:
    """One `lateusage` aggregate per (contract, billing period, late period), in key order; described
    for the `UsageRecorded` event with `billed_in`."""
    out = []
    for contract_id, billed_in, period in sorted(late):
        plan, readings = late[(contract_id, billed_in, period)]
        agg = rating.batch_aggregate(plan, readings)
        tx.put(late_key(contract_id, billed_in, period, tx.tx_id), agg.to_json())
        out.append(
            {"contract_id": contract_id, "period": period, "readings": len(readings), "billed_in": billed_in}
        )
    return out


def billed_aggregates(tx: Any, contract_id: str, billed_in: str) -> dict[str, rating.BatchAggregate]:
    """The late usage billed in `billed_in`, merged per period it belongs to (one range read, in key
    order: deterministic)."""
    groups: dict[str, list[rating.BatchAggregate]] = {}
    for key, record in tx.scan(LATE_USAGE, [contract_id, billed_in]):
        period = split_composite_key(key)[1][2]
        groups.setdefault(period, []).append(rating.BatchAggregate.from_json(record))
    return {p: rating.merge(aggs) for p, aggs in groups.items()}


def add_to_invoice(tx: Any, contract: Mapping[str, Any], plan: rating.Plan, period: str,
                   body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` (an invoice or a cost preview of `period`) with the late usage billed in it. Only a contract
    with the `next_invoice` policy can have any, so only its closes read the `lateusage` range (the
    others' transactions stay as they were)."""
    if policy(contract)[0] != NEXT_INVOICE:
        return dict(body)
    from chaincode import keys

    def readings_of(late_period: str) -> list[rating.ReadingIn]:
        """The readings of `late_period` billed in `period` (read only when an amendment cut it)."""
        return [
            proration.stored_reading(record)
            for _, record in tx.scan(keys.READING, [contract["id"], late_period])
            if record.get("billed_in") == period
        ]

    return with_late_lines(plan, body, billed_aggregates(tx, contract["id"], period), contract, readings_of)


def get_late_readings(tx: Any, body: dict[str, Any]) -> dict[str, Any]:
    """`GetLateReadings {"contract_id", "period"}`: the late readings billed in `period` (of earlier
    periods), in key order, for the proof bundle of that period's invoice."""
    from chaincode import keys
    from chaincode.model import require_id, require_period

    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    tx.contract(contract_id)
    periods = sorted({split_composite_key(k)[1][2] for k, _ in tx.scan(LATE_USAGE, [contract_id, period])})
    readings = [
        record
        for p in periods
        for _, record in tx.scan(keys.READING, [contract_id, p])
        if record.get("billed_in") == period
    ]
    return {"contract_id": contract_id, "period": period, "readings": readings}
