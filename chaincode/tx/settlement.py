"""After issue: ERP postings, payments, disputes and credit notes (the invoice state machine).

ISSUED -> POSTED -> (PARTIALLY_PAID) -> SETTLED, or ISSUED/POSTED/PARTIALLY_PAID -> DISPUTED -> CREDITED.
Every step arrives from a process that may retry after losing an answer (the ERP dispatcher, the
reconciliation job, a user clicking twice), so each one recognises its own replay and answers it with the
stored record and no write; a settled or credited invoice is never rewritten.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from chaincode import keys, rating
from chaincode.errors import ChaincodeError
from chaincode.model import (
    CREDITED,
    DISPUTED,
    ISSUED,
    PARTIALLY_PAID,
    POSTED,
    SETTLED,
    format_ts,
    history_entry,
    optional_str,
    parse_amount,
    require_id,
    require_party,
    require_str,
)
from chaincode.money import EXACT, ZERO, minor_units
from chaincode.tx.common import Tx

FINAL = (SETTLED, CREDITED)
# Splitting a gross credit into net and tax divides, which cannot be exact: 60 digits, then one half-up
# rounding to minor units (the only rounding), the same on every peer whatever the thread's context.
_DIVISION = Context(prec=60, rounding=ROUND_HALF_UP)


def _transition_refused(invoice: dict[str, Any], action: str) -> ChaincodeError:
    return ChaincodeError(
        "invalid_state_transition",
        f"cannot {action} invoice {invoice['id']} in status {invoice['status']}",
        invoice_id=invoice["id"],
        status=invoice["status"],
    )


def _with_status(tx: Tx, invoice: dict[str, Any], status: str) -> dict[str, Any]:
    if status == invoice["status"]:
        return invoice
    return {
        **invoice,
        "status": status,
        "history": [*invoice["history"], history_entry(status, tx.tx_id, tx.timestamp)],
    }


def _load(tx: Tx, body: dict[str, Any], what: str) -> dict[str, Any]:
    invoice = tx.invoice(require_id(body, "invoice_id"))
    require_party(
        tx.creator,
        {"id": invoice["contract_id"], "provider": invoice["provider"], "customer": invoice["customer"]},
        what=what,
    )
    return invoice


def record_erp_posting(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`RecordErpPosting`: one ERP reference per target; the first moves ISSUED -> POSTED."""
    target = body.get("target")
    if target not in ("provider", "customer"):
        raise ChaincodeError("invalid_argument", 'target must be "provider" or "customer"', field="target")
    system = require_str(body, "system")
    document_id = require_str(body, "document_id")
    delivery_id = require_str(body, "delivery_id")
    invoice = _load(tx, body, "record an ERP posting")
    for ref in invoice["erp_refs"]:
        if ref["target"] == target:
            if ref["document_id"] == document_id and ref["system"] == system:
                return invoice  # a retried posting
            raise ChaincodeError(
                "posting_conflict",
                f"invoice {invoice['id']} is already posted for the {target} as "
                f"{ref['system']} {ref['document_id']}",
                invoice_id=invoice["id"],
                existing=ref,
            )
    if invoice["status"] in FINAL and invoice.get("settled_by") != "prepaid":
        # (an invoice settled from a prepaid balance at issue still goes to the ERPs: ADR 0043)
        raise _transition_refused(invoice, "post")
    ref = {
        "target": target,
        "system": system,
        "document_id": document_id,
        "delivery_id": delivery_id,
        "tx_id": tx.tx_id,
        "at": format_ts(tx.timestamp),
    }
    updated = {**invoice, "erp_refs": [*invoice["erp_refs"], ref]}
    if invoice["status"] == ISSUED:  # partly paid from a prepaid balance at issue: PARTIALLY_PAID (ADR 0051)
        updated = _with_status(tx, updated, PARTIALLY_PAID if Decimal(invoice["paid"]) > 0 else POSTED)
    tx.put(keys.invoice(invoice["id"]), updated)
    tx.event(
        "InvoicePosted",
        {"invoice_id": invoice["id"], "target": target, "system": system, "document_id": document_id},
    )
    return updated


def record_payment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`RecordPayment`: POSTED/PARTIALLY_PAID -> PARTIALLY_PAID or SETTLED; a payment id counts once."""
    payment_id = require_str(body, "payment_id")
    paid_at = optional_str(body, "paid_at")
    source = optional_str(body, "source")
    invoice = _load(tx, body, "record a payment")
    if invoice.get("type") != "invoice":
        raise ChaincodeError("invalid_argument", "payments are recorded against invoices, not credit notes")
    currency = invoice["currency"]
    amount = parse_amount(body.get("amount"), "amount", minor_units(currency))
    if paid_at is not None:
        try:
            rating.parse_timestamp(paid_at)
        except ValueError as exc:
            raise ChaincodeError("invalid_argument", f"paid_at: {exc}", field="paid_at") from exc
    text = rating.format_money(amount, currency)
    for payment in invoice["payments"]:
        if payment["payment_id"] == payment_id:
            if payment["amount"] == text:
                return invoice  # a retried payment
            raise ChaincodeError(
                "payment_conflict",
                f"payment {payment_id} was recorded with amount {payment['amount']}",
                invoice_id=invoice["id"],
                payment_id=payment_id,
            )
    if invoice["status"] not in (POSTED, PARTIALLY_PAID):
        raise _transition_refused(invoice, "record a payment on")
    accept_overpayment = body.get("accept_overpayment", False)
    if not isinstance(accept_overpayment, bool):
        raise ChaincodeError("invalid_argument", "accept_overpayment must be true or false",
                             field="accept_overpayment")
    with localcontext(EXACT):  # never the caller's thread-local context
        paid = Decimal(invoice["paid"]) + amount
        excess = paid - Decimal(invoice["total"])
    total = Decimal(invoice["total"])
    if paid > total and not accept_overpayment:
        raise ChaincodeError(
            "overpayment",
            f"payment would bring {invoice['id']} to {rating.format_money(paid, currency)} "
            f"of {invoice['total']}",
            invoice_id=invoice["id"],
            paid=invoice["paid"],
            total=invoice["total"],
        )
    payment = {
        "payment_id": payment_id,
        "amount": text,
        "paid_at": paid_at,
        "source": source,
        "tx_id": tx.tx_id,
    }
    status = SETTLED if paid >= total else PARTIALLY_PAID
    updated = {
        **invoice,
        "payments": [*invoice["payments"], payment],
        "paid": rating.format_money(paid, currency),
    }
    if excess > 0:  # only with accept_overpayment: the money arrived; the excess is owed back (ADR 0043)
        updated["overpaid"] = rating.format_money(excess, currency)
    updated = _with_status(tx, updated, status)
    tx.put(keys.invoice(invoice["id"]), updated)
    tx.event(
        "PaymentRecorded",
        {"invoice_id": invoice["id"], "payment_id": payment_id, "amount": text, "status": status},
    )
    return updated


def reverse_payment(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ReversePayment`: a recorded payment came back (a returned direct debit, a recalled transfer).

    The payment stays in the record, marked with its reversal; `paid` drops by its amount and a SETTLED or
    PARTIALLY_PAID invoice reopens (PARTIALLY_PAID while something is still paid, else POSTED, or ISSUED
    when it was never posted). The one way a settled invoice changes (ADR 0043). `reversal_id` counts once.
    """
    payment_id = require_str(body, "payment_id")
    reversal_id = require_str(body, "reversal_id")
    reason = require_str(body, "reason")
    invoice = _load(tx, body, "reverse a payment")
    payments = invoice.get("payments") or []
    index = next((i for i, p in enumerate(payments) if p["payment_id"] == payment_id), None)
    if index is None:
        raise ChaincodeError("unknown_payment", f"invoice {invoice['id']} has no payment {payment_id}",
                             invoice_id=invoice["id"], payment_id=payment_id)
    done = payments[index].get("reversal")
    if done is not None:
        if done["reversal_id"] == reversal_id:
            return invoice  # a retried reversal
        raise ChaincodeError("payment_already_reversed",
                             f"payment {payment_id} was reversed by {done['reversal_id']}",
                             invoice_id=invoice["id"], payment_id=payment_id)
    if invoice["status"] not in (PARTIALLY_PAID, SETTLED):
        raise _transition_refused(invoice, "reverse a payment on")
    currency = invoice["currency"]
    with localcontext(EXACT):
        paid = Decimal(invoice["paid"]) - Decimal(payments[index]["amount"])
        excess = paid - Decimal(invoice["total"])
    reversal = {"reversal_id": reversal_id, "reason": reason, "tx_id": tx.tx_id,
                "at": format_ts(tx.timestamp)}
    changed = [*payments]
    changed[index] = {**payments[index], "reversal": reversal}
    updated = {**invoice, "payments": changed, "paid": rating.format_money(paid, currency)}
    updated.pop("overpaid", None)
    if excess > 0:
        updated["overpaid"] = rating.format_money(excess, currency)
    if paid >= Decimal(invoice["total"]):
        status = SETTLED
    elif paid > 0:
        status = PARTIALLY_PAID
    else:
        status = POSTED if invoice["erp_refs"] else ISSUED
    updated = _with_status(tx, updated, status)
    tx.put(keys.invoice(invoice["id"]), updated)
    tx.event("PaymentReversed", {"invoice_id": invoice["id"], "payment_id": payment_id,
                                 "reversal_id": reversal_id, "reason": reason, "status": status})
    return updated


def dispute(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`Dispute` by the customer: ISSUED/POSTED/PARTIALLY_PAID -> DISPUTED (the same dispute again is a
    no-op)."""
    reason = require_str(body, "reason")
    invoice = tx.invoice(require_id(body, "invoice_id"))
    if tx.creator != invoice["customer"]:
        raise ChaincodeError(
            "forbidden",
            f"only the customer {invoice['customer']} may dispute {invoice['id']}",
            msp_id=tx.creator,
        )
    if invoice["status"] == DISPUTED and invoice.get("dispute", {}).get("reason") == reason:
        return invoice
    if invoice.get("type") != "invoice" or invoice["status"] not in (ISSUED, POSTED, PARTIALLY_PAID):
        raise _transition_refused(invoice, "dispute")
    updated = {**invoice, "dispute": {"reason": reason, "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)}}
    updated = _with_status(tx, updated, DISPUTED)
    tx.put(keys.invoice(invoice["id"]), updated)
    tx.event("InvoiceDisputed", {"invoice_id": invoice["id"]})
    return updated


def _credit_amounts(invoice: dict[str, Any], gross: Decimal) -> tuple[list[dict[str, Any]], str, str, str]:
    """Lines, subtotal, tax, total of a credit note worth `gross` (tax included).

    The whole invoice is credited line for line; a partial credit is one line whose net and tax are split
    at the invoice's tax rate (net rounded once, tax = gross - net, so the parts always add up).
    """
    currency = invoice["currency"]
    total = Decimal(invoice["total"])
    if gross == total:
        return list(invoice["lines"]), invoice["subtotal"], invoice["tax"], invoice["total"]
    rate = Decimal(invoice.get("tax_rate") or "0")
    net = rating.round_money(_DIVISION.divide(gross, _DIVISION.add(1, rate)), currency)
    with localcontext(EXACT):
        tax = gross - net
    line = {
        "charge_id": "credit",
        "model": "credit",
        "quantity": "1",
        "amount": rating.format_money(net, currency),
    }
    return (
        [line],
        rating.format_money(net, currency),
        rating.format_money(tax, currency),
        rating.format_money(gross, currency),
    )


def issue_credit_note(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`IssueCreditNote` by the provider: DISPUTED -> CREDITED and `cn-{invoice_id}-{n}` is written.
    Returns the credit note; the same request after it succeeded returns that credit note again."""
    reason = require_str(body, "reason")
    invoice = tx.invoice(require_id(body, "invoice_id"))
    if tx.creator != invoice["provider"]:
        raise ChaincodeError(
            "forbidden",
            f"only the provider {invoice['provider']} may credit {invoice['id']}",
            msp_id=tx.creator,
        )
    currency = invoice["currency"]
    total = Decimal(invoice["total"])
    gross = total
    if body.get("amount") is not None:
        gross = parse_amount(body["amount"], "amount", minor_units(currency))
        if gross > total:
            raise ChaincodeError(
                "invalid_argument",
                f"credit {body['amount']} exceeds the invoice total {invoice['total']}",
                field="amount",
            )
    existing = invoice.get("credit_notes") or []
    if invoice["status"] == CREDITED and existing:
        last = tx.invoice(existing[-1])
        if last["reason"] == reason and Decimal(last["total"]) == gross:
            return last
    if invoice.get("type") != "invoice" or invoice["status"] != DISPUTED:
        raise _transition_refused(invoice, "credit")
    cn_id = keys.credit_note_id(invoice["id"], len(existing) + 1)
    lines, subtotal, tax, total_text = _credit_amounts(invoice, gross)
    note = {
        "id": cn_id,
        "type": "credit_note",
        "credit_for": invoice["id"],
        "reason": reason,
        "contract_id": invoice["contract_id"],
        "period": invoice["period"],
        "currency": currency,
        "provider": invoice["provider"],
        "customer": invoice["customer"],
        "erp": invoice.get("erp"),
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": total_text,
        "tax_rate": invoice.get("tax_rate"),
        "tax_category": invoice.get("tax_category"),
        "readings": invoice["readings"],
        "readings_digest": invoice["readings_digest"],
        "status": ISSUED,
        "tx_id": tx.tx_id,
        "issued_at": format_ts(tx.timestamp),
        "erp_refs": [],
        "payments": [],
        "paid": rating.format_money(ZERO, currency),
        "credit_notes": [],
        "history": [history_entry(ISSUED, tx.tx_id, tx.timestamp)],
    }
    parties = [invoice["provider"], invoice["customer"]]
    cn_key = keys.invoice(cn_id)
    tx.put(cn_key, note)
    tx.stub.set_key_endorsement(cn_key, parties)
    updated = _with_status(tx, {**invoice, "credit_notes": [*existing, cn_id]}, CREDITED)
    tx.put(keys.invoice(invoice["id"]), updated)
    tx.event("CreditNoteIssued", {"invoice_id": invoice["id"], "credit_note_id": cn_id, "amount": total_text})
    return note
