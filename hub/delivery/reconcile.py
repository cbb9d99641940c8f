"""Reconciliation: reads payment state of posted invoices from the ERP and records new payments on the
ledger (`RecordPayment`), which moves invoices to PARTIALLY_PAID / SETTLED.

One ERP per invoice is the source of payment truth: the provider's (money received), else the customer's
(money paid), never both, so one payment is never counted twice. A hub of one org (ADR 0065) has only its
own ERP: each side records the increase of its ERP's paid-to-date over the ledger's `paid`, under an id
both sides derive alike (`paid-to-date:<amount>`), so whichever side learns first records the payment
and the other's same record is a payment id the chaincode already has. Payment ids come from the ERP (prefixed
with the connector name) and the chaincode ignores a payment id it already has, so a repeated run changes
nothing. Runs as a scheduler job, one runner at a time (the hub scheduler's DB lease).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import ConnectorError, ErpRef, ErpStatus, Payment
from hub.billing.answers import Invoice
from hub.billing.client import ContractClient
from hub.delivery.dispatcher import Connectors
from hub.delivery.models import DELIVERED, POSTED_ELSEWHERE, Delivery
from hub.ledger.base import ChaincodeRejected, LedgerError

log = logging.getLogger("ledgerhub.delivery")
FINAL_ERP_STATES = ("paid", "cancelled")


@dataclass
class ReconcileReport:
    checked: int = 0
    payments_recorded: int = 0
    errors: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(self, ledger: Any, db: sessionmaker[Session], connectors: Connectors, *,
                 clock: Callable[[], dt.datetime], one_org: bool = False) -> None:
        self.one_org = one_org  # a hub of one org: shared paid-to-date ids (module docstring)
        self.ledger = ledger
        self.client = ContractClient.of(ledger)
        self.db = db
        self.connectors = connectors
        self.clock = clock

    def sources(self) -> list[Delivery]:
        """Per invoice the delivered row to read payments from: provider first, else customer."""
        with self.db() as session:
            rows = session.scalars(
                select(Delivery)
                .where(Delivery.state == DELIVERED)
                .where(or_(Delivery.erp_state.is_(None), Delivery.erp_state != POSTED_ELSEWHERE))
                .order_by(Delivery.invoice_id, Delivery.id)
            ).all()
        chosen: dict[str, Delivery] = {}
        for row in rows:
            if self.connectors.sends_messages(row.connector):  # a webhook has no ERP document to ask about
                continue
            current = chosen.get(row.invoice_id)
            if current is None or (current.target != "provider" and row.target == "provider"):
                chosen[row.invoice_id] = row
        return [row for row in chosen.values() if row.erp_state not in FINAL_ERP_STATES]

    def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        for row in self.sources():
            report.checked += 1
            try:
                report.payments_recorded += self._reconcile(row)
            except (ConnectorError, LedgerError) as exc:
                report.errors.append(f"{row.id}: {exc}")
                log.warning("reconciliation of one invoice failed", extra={"delivery_id": row.id},
                            exc_info=True)
        return report

    def _reconcile(self, row: Delivery) -> int:
        connector = self.connectors.get(row.connector, row.target)
        ref = ErpRef(system=row.erp_system or row.connector, document_id=str(row.erp_document_id),
                     target=row.target, details=json.loads(row.erp_details or "{}"))  # type: ignore[arg-type]
        status = connector.status(ref)
        invoice = self.client.get_invoice(row.invoice_id, as_org=row.org)
        if invoice.is_credit_note:
            payments: list[Payment] = []  # a credit note is settled against its invoice, not paid
        elif self.one_org:
            payments = shared_balance_payments(status, invoice)
        else:
            payments = list(status.payments) or balance_payments(ref, status, invoice)
        known = invoice.payment_ids()
        recorded = 0
        for payment in payments:
            payment_id = payment.payment_id if self.one_org else f"{ref.system}:{payment.payment_id}"
            if payment_id in known:
                continue
            paid_at = None
            if payment.paid_at is not None:
                paid_at = payment.paid_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
            try:
                self.client.record_payment(row.invoice_id, payment_id=payment_id, amount=payment.amount,
                                           source=ref.system, paid_at=paid_at, as_org=row.org)
            except ChaincodeRejected as exc:
                # e.g. overpayment or an invoice in dispute: an operator must look, the rest goes on
                log.warning("payment refused by the ledger: %s", exc, extra={"delivery_id": row.id})
                raise ConnectorError(f"ledger refused payment {payment_id}: {exc.code}") from exc
            recorded += 1
        with self.db.begin() as session:
            session.execute(update(Delivery).where(Delivery.id == row.id)
                            .values(erp_state=status.state, reconciled_at=self.clock()))
        return recorded


def balance_payments(ref: ErpRef, status: ErpStatus, invoice: Invoice) -> list[Payment]:
    """For ERPs that report a paid-to-date amount instead of individual payments (Oracle's invoice balance,
    SAP's clearing status): the increase since the ledger's last record, as one payment whose id is the
    cumulative amount. Idempotent: run twice, the second run finds nothing new."""
    paid_on_ledger = invoice.paid
    if status.paid_amount <= paid_on_ledger:
        return []
    return [Payment(payment_id=f"{ref.document_id}:paid-to-date:{status.paid_amount}",
                    amount=status.paid_amount - paid_on_ledger)]


def shared_balance_payments(status: ErpStatus, invoice: Invoice) -> list[Payment]:
    """A hub of one org (ADR 0065): the increase of this ERP's paid-to-date (its reported total, or the sum
    of its itemised payments) over the ledger's `paid`, as one payment whose id names only the cumulative
    amount. The other party's hub, seeing the same money in its own ERP, derives the same id; the chaincode
    ignores a payment id it has, so the money is counted once whichever hub learns of it first."""
    paid_to_date = max(status.paid_amount, sum((p.amount for p in status.payments), Decimal(0)))
    if paid_to_date <= invoice.paid:
        return []
    # normalised text: both ERPs' "100.00" and "100.0" name the same id
    return [Payment(payment_id=f"paid-to-date:{paid_to_date.normalize():f}",
                    amount=paid_to_date - invoice.paid)]
