"""Hooks of amendments into closing and previewing a period (ADR 0046, ADR 0047).

* `rated_period`: the invoice's money part for a contract with plan versions (None for a contract never
  amended, whose invoices `invoices.rated_body` rates exactly as before). A period under one version that
  is the contract's current pricing is rated from its batch aggregates; a period cut by an amendment or an
  amended end, or under an earlier version, from its readings (`chaincode.proration`).
* `preview_invoice` (`PreviewInvoice` query): `CloseBillingPeriod` itself, run on a stub that keeps its
  writes and event to itself, at the query's timestamp and without the "period has ended" check: the
  invoice exactly as closing now would issue it, by the same code, with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import localcontext
from typing import Any

from chaincode import keys, proration, rating
from chaincode.model import require_id, require_period
from chaincode.money import EXACT, ZERO, format_decimal
from chaincode.stub import Stub
from chaincode.tx.common import Tx


def rated_period(
    tx: Tx, contract: dict[str, Any], plan: rating.Plan, period: str, agg: rating.BatchAggregate
) -> dict[str, Any] | None:
    if not contract.get("versions"):
        return None
    segs = proration.segments(contract, plan, period)
    if not segs:
        return None
    p_start, p_end = rating.period_bounds(period, plan.timezone)
    whole = len(segs) == 1 and segs[0].start == p_start and segs[0].end == p_end
    if whole and dict(segs[0].pricing) == proration.pricing_of(contract) and not _plan_shaped(contract):
        rated = rating.rate(plan, agg).to_json()
        lines = [proration.versioned_line(line, segs[0].version) for line in rated["lines"]]
        body = _body(plan, lines, rated["subtotal"], rated["tax"], rated["total"], agg)
    else:
        # the segments' digests are not needed (the invoice's is the batches'), so readings are not rehashed
        readings = [_reading(record) for _, record in tx.scan(keys.READING, [contract["id"], period])]
        lines, subtotal, described = proration.rate_segments(contract, plan, period, segs, readings)
        cur = plan.currency
        with localcontext(EXACT):
            subtotal = rating.round_money(subtotal, cur)
            tax = rating.round_money(subtotal * plan.tax_rate if plan.tax_rate is not None else ZERO, cur)
            total = rating.round_money(subtotal + tax, cur)
        body = _body(plan, lines, format_decimal(subtotal), format_decimal(tax), format_decimal(total), agg)
        body["segments"] = described
    body["plan_versions"] = sorted({v for s in segs for v in s.versions})
    return body


_reading = proration.stored_reading
_plan_shaped = proration.plan_shaped


def _body(
    plan: rating.Plan, lines: list[dict[str, Any]], subtotal: str, tax: str, total: str,
    agg: rating.BatchAggregate,
) -> dict[str, Any]:
    agg_json = agg.to_json()
    return {
        "currency": plan.currency,
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "tax_rate": format_decimal(plan.tax_rate) if plan.tax_rate is not None else None,
        "tax_category": plan.tax_category,
        "readings": agg_json["readings"],
        "readings_digest": agg_json["digest"],
    }


class PreviewStub:
    """A stub whose writes, key policies and event stay in this object: reads see the writes, the ledger
    never does (a query must not write, whatever the host would do with a write set)."""

    def __init__(self, inner: Stub) -> None:
        self._inner = inner
        self._writes: dict[str, bytes | None] = {}

    def __getattr__(self, name: str) -> Any:  # tx_id, channel_id, creator_*, transient, history
        return getattr(self._inner, name)

    def get_state(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._inner.get_state(key)

    def get_multiple_states(self, keys_: Sequence[str]) -> list[bytes | None]:
        inner = self._inner.get_multiple_states([k for k in keys_ if k not in self._writes])
        it = iter(inner)
        return [self._writes[k] if k in self._writes else next(it) for k in keys_]

    def put_state(self, key: str, value: bytes) -> None:
        self._writes[key] = value

    def del_state(self, key: str) -> None:
        self._writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        return self._inner.get_state_by_range(start, end)

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: Sequence[str]
    ) -> Iterator[tuple[str, bytes]]:
        return self._inner.get_state_by_partial_composite_key(object_type, attributes)

    def set_event(self, name: str, payload: bytes) -> None:
        pass

    def set_key_endorsement(self, key: str, orgs: Sequence[str]) -> None:
        pass


def preview_invoice(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`PreviewInvoice {"contract_id", "period"}` -> `{"contract_id", "period", "as_of", "status",
    "invoice"}`: for an open period the invoice closing it now would issue (`status` "OPEN"); for a closed
    one the invoice issued ("CLOSED"). Refusals are those of `CloseBillingPeriod` but `period_not_ended`."""
    from chaincode.tx import invoices

    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    closed = tx.get(keys.period(contract_id, period))
    preview_tx = Tx(PreviewStub(tx.stub))  # type: ignore[arg-type]
    invoice = invoices.close_billing_period(
        preview_tx, {"contract_id": contract_id, "period": period}, preview=True
    )
    is_closed = closed is not None and closed.get("status") == "CLOSED"
    return {
        "contract_id": contract_id,
        "period": period,
        "as_of": rating.format_timestamp(tx.timestamp),
        "status": "CLOSED" if is_closed else "OPEN",
        "invoice": invoice,
    }
