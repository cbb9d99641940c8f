"""Closing a billing period into an invoice, and the queries over periods, usage and invoices.

Closing reads the period's batch aggregates (O(batches), never O(readings)), merges them and rates the
result with the plan both parties agreed. It writes the contract key (`last_closed_period`), whose key-level
policy needs provider AND customer, so no invoice can be issued by one party alone; the invoice and period
keys get the same policy for everything that follows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from chaincode import keys, rating
from chaincode import late as late_readings
from chaincode.errors import ChaincodeError
from chaincode.model import (
    ACTIVE,
    CLOSED,
    ENDED,
    ISSUED,
    OPEN,
    format_ts,
    history_entry,
    load_record,
    optional_str,
    require_id,
    require_party,
    require_period,
)
from chaincode.money import ZERO, format_decimal
from chaincode.tx import prepaid, progressive, versioned
from chaincode.tx.common import Tx, parse_plan


def _bounds_check(plan: rating.Plan, period: str) -> tuple[dt.datetime, dt.datetime]:
    """The period's [start, end) in UTC; `invalid_period` when it lies outside the contract's term."""
    p_start, p_end = rating.period_bounds(period, plan.timezone)
    c_start, c_end = rating.contract_bounds(plan)
    if p_end <= c_start or (c_end is not None and p_start >= c_end):
        raise ChaincodeError(
            "invalid_period", f"period {period} is outside the contract's term", period=period
        )
    return p_start, p_end


def merged_aggregate(tx: Tx, contract_id: str, period: str) -> rating.BatchAggregate:
    """Merge every batch aggregate of (contract, period); batches are read in key order (deterministic)."""
    aggs = [
        rating.BatchAggregate.from_json(record)
        for _, record in tx.scan(keys.USAGE_BATCH, [contract_id, period])
    ]
    return rating.merge(aggs)


def rated_body(contract: dict[str, Any], plan: rating.Plan, agg: rating.BatchAggregate) -> dict[str, Any]:
    """The invoice's money part: rating's lines and totals plus the reading count and digest."""
    rated = rating.rate(plan, agg).to_json()
    agg_json = agg.to_json()
    return {
        "currency": plan.currency,
        "lines": rated["lines"],
        "subtotal": rated["subtotal"],
        "tax": rated["tax"],
        "total": rated["total"],
        "tax_rate": format_decimal(plan.tax_rate) if plan.tax_rate is not None else None,
        "tax_category": plan.tax_category,
        "readings": agg_json["readings"],
        "readings_digest": agg_json["digest"],
    }


def close_billing_period(tx: Tx, body: dict[str, Any], *, preview: bool = False) -> dict[str, Any]:
    """`CloseBillingPeriod`: issue `inv-{contract}-{period}`; closing again returns it and writes nothing.
    `preview`: run by `PreviewInvoice` on a stub that keeps its writes (no "period has ended" check)."""
    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    contract = tx.contract(contract_id)
    require_party(tx.creator, contract, what="close a billing period")
    period_key = keys.period(contract_id, period)
    closed = tx.get(period_key)
    if closed is not None and closed.get("status") == CLOSED:
        return tx.invoice(closed["invoice_id"])
    if contract["status"] not in (ACTIVE, ENDED):
        raise ChaincodeError(
            "contract_not_active",
            f"contract {contract_id} is {contract['status']}",
            status=contract["status"],
        )
    plan = parse_plan(contract)
    _, p_end = _bounds_check(plan, period)
    # the contract's last period can be invoiced once the contract has ended (ADR 0046)
    if tx.timestamp < min(p_end, rating.contract_bounds(plan)[1] or p_end) and not preview:
        raise ChaincodeError(
            "period_not_ended",
            f"period {period} ends at {format_ts(p_end)} ({plan.timezone})",
            period_end=format_ts(p_end),
        )
    agg = merged_aggregate(tx, contract_id, period)
    invoice_id = keys.invoice_id(contract_id, period)
    invoice = {
        "id": invoice_id,
        "type": "invoice",
        "contract_id": contract_id,
        "period": period,
        "provider": contract["provider"],
        "customer": contract["customer"],
        "erp": contract.get("erp"),
        **(versioned.rated_period(tx, contract, plan, period, agg) or rated_body(contract, plan, agg)),
        "status": ISSUED,
        "tx_id": tx.tx_id,
        "issued_at": format_ts(tx.timestamp),
        "erp_refs": [],
        "payments": [],
        "paid": rating.format_money(ZERO, plan.currency),
        "credit_notes": [],
        "history": [history_entry(ISSUED, tx.tx_id, tx.timestamp)],
    }
    invoice = late_readings.add_to_invoice(tx, contract, plan, period, invoice)  # ADR 0048
    # then the interims: the period's whole invoice, late usage included, minus what they billed
    invoice = progressive.deduct(tx, contract, invoice)  # bills the rest after interim invoices (ADR 0051)
    invoice = prepaid.settle_at_issue(tx, contract, invoice)  # unchanged without a covering balance
    parties = [contract["provider"], contract["customer"]]
    inv_key = keys.invoice(invoice_id)
    tx.put(inv_key, invoice)
    tx.stub.set_key_endorsement(inv_key, parties)
    tx.put(period_key, {"status": CLOSED, "invoice_id": invoice_id, "closed_tx": tx.tx_id})
    tx.stub.set_key_endorsement(period_key, parties)
    last = contract.get("last_closed_period")
    updated = {**contract, "last_closed_period": max(last, period) if last else period}
    _, c_end = rating.contract_bounds(plan)
    if c_end is not None and p_end >= c_end:
        updated["status"] = ENDED  # the term's last period is closed: the contract is over
    tx.put(keys.contract(contract_id), updated)
    tx.event(
        "InvoiceIssued",
        {
            "invoice_id": invoice_id,
            "contract_id": contract_id,
            "period": period,
            "currency": invoice["currency"],
            "total": invoice["total"],
            "erp": contract.get("erp"),
        },
    )
    return invoice


# --- queries ---------------------------------------------------------------------------------------


def get_invoice(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    return tx.invoice(require_id(body, "id"))


def list_invoices(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ListInvoices {"contract_id"?, "status"?}` -> `{"invoices": [...]}` in key order."""
    contract_id = optional_str(body, "contract_id")
    status = optional_str(body, "status")
    out = []
    for record in _invoice_records(tx, contract_id):
        if contract_id is not None and record.get("contract_id") != contract_id:
            continue
        if status is not None and record.get("status") != status:
            continue
        out.append(record)
    return {"invoices": out}


def _invoice_records(tx: Tx, contract_id: str | None) -> Iterator[dict[str, Any]]:
    """Invoice and credit-note records in key order; for one contract only the two key ranges its ids
    can be in (`cn-inv-{contract}-...` sorts before `inv-{contract}-...`), not every invoice on the
    ledger. The ranges may hold another contract whose id extends this one; the caller filters."""
    if contract_id is None:
        yield from (record for _, record in tx.scan(keys.INVOICE, []))
        return
    for start, end in keys.invoice_ranges(contract_id):
        for _, value in tx.stub.get_state_by_range(start, end):
            yield load_record(value)


def get_period(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetPeriod` -> `{"contract_id", "period", "status": "OPEN"|"CLOSED", "invoice_id"?, "closed_tx"?}`."""
    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    tx.contract(contract_id)
    record = tx.get(keys.period(contract_id, period)) or {"status": OPEN}
    return {"contract_id": contract_id, "period": period, **record}


def get_usage(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetUsage`: the period's aggregates to date and the invoice that closing now would issue."""
    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    contract = tx.contract(contract_id)
    plan = parse_plan(contract)
    _bounds_check(plan, period)
    agg = merged_aggregate(tx, contract_id, period)
    status = tx.get(keys.period(contract_id, period)) or {"status": OPEN}
    return {
        "contract_id": contract_id,
        "period": period,
        "status": status["status"],
        "as_of": format_ts(tx.timestamp),
        "aggregate": agg.to_json(),
        "cost": late_readings.add_to_invoice(
            tx, contract, plan, period,
            versioned.rated_period(tx, contract, plan, period, agg) or rated_body(contract, plan, agg),
        ),
    }


def get_readings(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetReadings`: every reading of (contract, period) with its message id, in key order (for audit)."""
    contract_id = require_id(body, "contract_id")
    period = require_period(body)
    tx.contract(contract_id)
    readings = [record for _, record in tx.scan(keys.READING, [contract_id, period])]
    return {"contract_id": contract_id, "period": period, "readings": readings}


def get_usage_message(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetUsageMessage`: the signed message exactly as recorded (`unknown_message` if absent)."""
    device_id = require_id(body, "device_id")
    message_id = require_id(body, "message_id")
    raw = tx.stub.get_state(keys.usage_message(device_id, message_id))
    if raw is None:
        raise ChaincodeError(
            "unknown_message",
            f"no message {message_id} from {device_id}",
            device_id=device_id,
            message_id=message_id,
        )
    return load_record(raw)
