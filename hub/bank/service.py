"""Importing a bank statement: match each credit to an invoice, record it on the ledger exactly once.

Order of work for one file (ADR 0041):
1. parse it strictly (`hub.bank.camt`); a bad file is refused whole, nothing written;
2. compare every entry with what is already stored under its bank reference: the same entry again is a
   duplicate (nothing happens), the same reference with other content is refused whole
   (`bank_entry_conflict`);
3. for each new entry (and each `pending` one from earlier imports): write its row as `pending`, then
   - a booked credit whose RF reference names one of the org's invoices: `RecordPayment` with payment id
     `bank:{key}` and `accept_overpayment` (the money is there) -> `recorded`;
   - a credit without a usable reference whose amount, currency and debtor name fit exactly one open
     invoice -> `held` for an operator to confirm; otherwise -> `unmatched` (the reconciliation queue);
   - a reversal (`RvslInd`, a returned direct debit) of a recorded payment: `ReversePayment` ->
     `recorded`, the original `reversed`, the invoice reopens, and a `payment_returned` alert is raised
     for both parties;
   - anything else (outgoing debits, bookings not final) -> `ignored`.
The ledger's own idempotency (payment and reversal ids) makes a retry after a crash harmless.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chaincode import creditor_ref
from hub.bank import camt
from hub.bank.alerts import raise_payment_returned
from hub.bank.models import (
    DISMISSED,
    HELD,
    IGNORED,
    PENDING,
    QUEUE_STATES,
    RECORDED,
    REVERSED,
    UNMATCHED,
    BankEntry,
)
from hub.bank.top_up_returns import reverse_top_up
from hub.billing.answers import Answer, Invoice
from hub.billing.client import ContractClient
from hub.ledger.base import ChaincodeRejected, LedgerError
from hub.store.models import ContractView, InvoiceView

A = TypeVar("A", bound=Answer)
log = logging.getLogger("ledgerhub.bank")
OPEN_STATUSES = ("ISSUED", "POSTED", "PARTIALLY_PAID")
# what the ledger says about an invoice that cannot take the payment now, and whether to retry later
_LATER = {"ISSUED": "invoice_not_posted"}


class BankError(Exception):
    def __init__(self, code: str, detail: str, status: int = 409, **extra: Any) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status, self.extra = code, detail, status, extra


@dataclass
class ImportReport:
    statement_id: str
    message_type: str
    entries: int = 0
    duplicates: int = 0
    recorded: list[dict[str, Any]] = field(default_factory=list)
    reversed: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"statement_id": self.statement_id, "message_type": self.message_type,
                "entries": self.entries, "duplicates": self.duplicates, "recorded": self.recorded,
                "reversed": self.reversed, "queued": self.queued, "ignored": self.ignored}


def entry_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _paid_at(booking: str | None) -> str | None:
    if not booking or len(booking) < 10:
        return None
    try:
        day = dt.date.fromisoformat(booking[:10])
    except ValueError:
        return None
    return f"{day.isoformat()}T00:00:00Z"


def entry_view(row: BankEntry) -> dict[str, Any]:
    return {"id": row.id, "bank_reference": row.key, "statement_id": row.statement_id,
            "message_type": row.message_type, "credit": row.credit, "reversal": row.reversal,
            "amount": row.amount, "currency": row.currency, "booking_date": row.booking_date,
            "reference": row.reference, "quoted_reference": row.quoted_reference,
            "end_to_end_id": row.end_to_end_id, "debtor_name": row.debtor_name,
            "return_reason": row.return_reason, "state": row.state, "reason": row.reason,
            "invoice_id": row.invoice_id, "candidate_invoice_id": row.candidate_invoice_id,
            "payment_id": row.payment_id, "note": row.note}


class BankImporter:
    """`gateway` is the hub's LedgerGateway or a ContractClient (the ledger calls go through the client:
    typed, org mapping); `parties` the master data (debtor names for the fallback match); `enqueue` puts
    alert webhooks on the delivery outbox."""

    def __init__(self, gateway: Any, db: sessionmaker[Session], *, parties: Mapping[str, Any],
                 enqueue: Callable[..., None] | None = None,
                 write_invoice: Callable[[dict], None] | None = None,
                 max_bytes: int = camt.MAX_STATEMENT_BYTES) -> None:
        self.gateway = gateway
        self.client = ContractClient.of(gateway)
        self.db = db
        self.parties = parties
        self.enqueue = enqueue
        self.write_invoice = write_invoice
        self.max_bytes = max_bytes

    # --- import -------------------------------------------------------------------------------------

    def import_statement(self, data: bytes, org: str) -> ImportReport:
        statement = camt.parse(data, max_bytes=self.max_bytes)
        report = ImportReport(statement.message_id, statement.message_type, entries=len(statement.entries))
        todo: list[str] = []
        with self.db.begin() as session:
            existing = {row.key: row for row in session.scalars(
                select(BankEntry).where(BankEntry.key.in_([e.key for e in statement.entries])))}
            for entry in statement.entries:
                row = existing.get(entry.key)
                if row is not None and (row.org != org or row.amount != entry.text_amount
                                        or row.currency != entry.currency or row.credit != entry.credit
                                        or row.reversal != entry.reversal):
                    raise BankError("bank_entry_conflict",
                                    f"bank reference {entry.key} was imported before with other content",
                                    bank_reference=entry.key)
            for entry in statement.entries:
                row = existing.get(entry.key)
                if row is not None and not (row.state == IGNORED and row.reason == "not_booked"
                                            and entry.booked):
                    report.duplicates += row.state != PENDING
                    if row.state == PENDING:
                        todo.append(row.id)
                    continue
                if row is None:
                    row = BankEntry(id=entry_id(entry.key), key=entry.key, org=org)
                    session.add(row)
                self._fill(row, entry, statement.message_id)
                todo.append(row.id)
            # earlier entries waiting for their invoice to be posted, or for the ledger to come back
            todo += [r for r in session.scalars(select(BankEntry.id).where(
                BankEntry.org == org, BankEntry.state == PENDING)) if r not in todo]
        for ident in todo:
            self._process(ident, report)
        return report

    @staticmethod
    def _fill(row: BankEntry, entry: camt.Entry, statement_id: str) -> None:
        row.statement_id, row.message_type = statement_id, entry.message_type
        row.credit, row.reversal, row.booked = entry.credit, entry.reversal, entry.booked
        row.amount, row.currency = entry.text_amount, entry.currency
        row.booking_date, row.reference = entry.booking_date, entry.reference
        row.quoted_reference = (entry.quoted_reference or "")[:200] or None
        row.end_to_end_id, row.return_reason = entry.end_to_end_id, entry.return_reason
        row.debtor_name = (entry.debtor_name or "")[:300] or None
        row.state, row.reason = PENDING, None
        row.updated_at = dt.datetime.now(dt.UTC)

    def _process(self, ident: str, report: ImportReport) -> None:
        with self.db() as session:
            row = session.get(BankEntry, ident)
            assert row is not None
            session.expunge(row)
        if not row.booked:
            self._finish(row, IGNORED, "not_booked")
            report.ignored += 1
        elif row.reversal or (not row.credit and row.return_reason):
            self._reverse(row, report)
        elif not row.credit:
            self._finish(row, IGNORED, "debit")
            report.ignored += 1
        else:
            self._credit(row, report)

    # --- credits ------------------------------------------------------------------------------------

    def _invoices(self, org: str) -> list[InvoiceView]:
        with self.db() as session:
            return list(session.scalars(select(InvoiceView).where(
                InvoiceView.provider == org, InvoiceView.type == "invoice")))

    def _by_reference(self, row: BankEntry) -> InvoiceView | None:
        if row.invoice_id:  # resolved by an operator, or matched by an earlier attempt
            return next((i for i in self._invoices(row.org) if i.id == row.invoice_id), None)
        if not row.reference:
            return None
        found = [i for i in self._invoices(row.org) if creditor_ref.for_invoice(i.id) == row.reference]
        return found[0] if len(found) == 1 else None

    def _fallback(self, row: BankEntry) -> InvoiceView | None:
        """Exactly one open invoice of this org with this total, currency and customer name."""
        name = (row.debtor_name or "").strip().casefold()
        if not name:
            return None
        found = []
        for inv in self._invoices(row.org):
            customer_name = str((self.parties.get(inv.customer) or {}).get("name") or inv.customer)
            if (inv.status in OPEN_STATUSES and inv.currency == row.currency and inv.total == row.amount
                    and customer_name.strip().casefold() == name):
                found.append(inv)
        return found[0] if len(found) == 1 else None

    def _top_up_contract(self, row: BankEntry) -> str | None:
        if not row.reference or row.invoice_id:
            return None
        with self.db() as session:
            ids = list(session.scalars(select(ContractView.id).where(ContractView.provider == row.org)))
        found = [c for c in ids if creditor_ref.for_top_up(c) == row.reference]
        return found[0] if len(found) == 1 else None

    def _top_up(self, row: BankEntry, contract_id: str, report: ImportReport) -> None:
        top_up_id = f"bank:{row.key}"
        record = self._submit(row, report, lambda: self.client.top_up_prepaid(
            contract_id, top_up_id=top_up_id, amount=row.amount, source=f"bank:{row.message_type}",
            as_org=row.org))
        if record is None:
            return
        self._finish(row, RECORDED, None, payment_id=top_up_id, note=f"prepaid top-up of {contract_id}")
        report.recorded.append({"id": row.id, "bank_reference": row.key, "top_up": contract_id,
                                "amount": row.amount, "currency": row.currency,
                                "balance": record.raw.get("balance")})

    def _credit(self, row: BankEntry, report: ImportReport) -> None:
        invoice = self._by_reference(row)
        if invoice is None and (contract_id := self._top_up_contract(row)) is not None:
            self._top_up(row, contract_id, report)
            return
        if invoice is None:
            candidate = self._fallback(row)
            if candidate is not None:
                self._finish(row, HELD, "confirm_match", candidate_invoice_id=candidate.id)
            else:
                reason = "unknown_reference" if row.reference else (
                    "invalid_reference" if row.quoted_reference else "no_reference")
                self._finish(row, UNMATCHED, reason)
            report.queued.append(self._view(row.id))
            return
        if invoice.currency != row.currency:
            self._finish(row, UNMATCHED, "currency_mismatch", invoice_id=invoice.id)
            report.queued.append(self._view(row.id))
            return
        self._record(row, invoice.id, report)

    def _record(self, row: BankEntry, invoice_id: str, report: ImportReport) -> None:
        payment_id = f"bank:{row.key}"
        try:
            invoice = self.client.record_payment(
                invoice_id, payment_id=payment_id, amount=row.amount, source=f"bank:{row.message_type}",
                accept_overpayment=True, paid_at=_paid_at(row.booking_date), as_org=row.org)
        except ChaincodeRejected as exc:
            self._refused(row, invoice_id, exc, report)
            return
        except LedgerError as exc:
            log.warning("ledger unavailable for bank entry %s: %s", row.key, exc)
            self._finish(row, PENDING, "ledger_unavailable", invoice_id=invoice_id)
            report.queued.append(self._view(row.id))
            return
        self._finish(row, RECORDED, None, invoice_id=invoice_id, payment_id=payment_id)
        self._project(invoice)
        report.recorded.append({"id": row.id, "bank_reference": row.key, "invoice_id": invoice_id,
                                "amount": row.amount, "currency": row.currency,
                                "status": invoice.status, "overpaid": invoice.raw.get("overpaid")})

    def _submit(self, row: BankEntry, report: ImportReport, call: Callable[[], A],
                invoice_id: str | None = None) -> A | None:
        """`call` (one client transaction) for this entry; None when it did not happen, the entry then
        queued: refused by the contract (unmatched, with its code) or the ledger unreachable (pending, tried
        again later)."""
        try:
            answer = call()
        except ChaincodeRejected as exc:
            self._finish(row, UNMATCHED, f"ledger_refused:{exc.code}", invoice_id=invoice_id)
        except LedgerError:
            self._finish(row, PENDING, "ledger_unavailable", invoice_id=invoice_id)
        else:
            return answer
        report.queued.append(self._view(row.id))
        return None

    def _refused(self, row: BankEntry, invoice_id: str, exc: ChaincodeRejected, report: ImportReport) -> None:
        status = (exc.error.details or {}).get("status") if exc.code == "invalid_state_transition" else None
        if status in _LATER:
            self._finish(row, PENDING, _LATER[status], invoice_id=invoice_id)
        elif status:
            self._finish(row, UNMATCHED, f"invoice_{str(status).lower()}", invoice_id=invoice_id)
        else:
            self._finish(row, UNMATCHED, f"ledger_refused:{exc.code}", invoice_id=invoice_id)
        report.queued.append(self._view(row.id))

    def _project(self, invoice: Invoice) -> None:
        if self.write_invoice is not None:
            try:
                self.write_invoice(dict(invoice.raw))
            except Exception:  # the projector catches up from the event stream anyway
                log.warning("read model update after a bank payment failed", exc_info=True)

    # --- reversals ----------------------------------------------------------------------------------

    def _original(self, row: BankEntry) -> BankEntry | None:
        with self.db() as session:
            query = select(BankEntry).where(
                BankEntry.org == row.org, BankEntry.state == RECORDED, BankEntry.credit.is_(True),
                BankEntry.reversal.is_(False), BankEntry.amount == row.amount,
                BankEntry.currency == row.currency)
            candidates = list(session.scalars(query.order_by(BankEntry.created_at)))
        if row.end_to_end_id:
            same = [c for c in candidates if c.end_to_end_id == row.end_to_end_id]
            if same:
                return same[-1]
        if row.reference:
            same = [c for c in candidates if c.reference == row.reference]
            if same:
                return same[-1]
        return None

    def _reverse(self, row: BankEntry, report: ImportReport) -> None:
        original = self._original(row)
        if (original is not None and original.invoice_id is None and original.payment_id is not None
                and (contract_id := self._top_up_contract(original)) is not None):
            reverse_top_up(self, row, original, contract_id, report)  # a returned top-up (ADR 0051)
            return
        if original is None or original.invoice_id is None or original.payment_id is None:
            self._finish(row, UNMATCHED, "original_payment_not_found")
            report.queued.append(self._view(row.id))
            return
        reason = row.return_reason or "reversal"
        invoice_id, payment_id = original.invoice_id, original.payment_id
        invoice = self._submit(row, report, lambda: self.client.reverse_payment(
            invoice_id, payment_id=payment_id, reversal_id=f"bank:{row.key}", reason=reason, as_org=row.org),
            invoice_id=invoice_id)
        if invoice is None:
            return
        with self.db.begin() as session:
            back = session.get(BankEntry, original.id)
            if back is not None:
                back.state, back.updated_at = REVERSED, dt.datetime.now(dt.UTC)
            this = session.get(BankEntry, row.id)
            if this is not None:
                this.state, this.reason, this.invoice_id = RECORDED, None, original.invoice_id
                this.payment_id, this.reverses = original.payment_id, original.id
                this.updated_at = dt.datetime.now(dt.UTC)
            raise_payment_returned(session, dict(invoice.raw), reversal_key=row.id, reason=reason,
                                   amount=row.amount, enqueue=self.enqueue)
        self._project(invoice)
        report.reversed.append({"id": row.id, "bank_reference": row.key, "invoice_id": original.invoice_id,
                                "payment_id": original.payment_id, "reason": reason,
                                "status": invoice.status})

    # --- the queue ----------------------------------------------------------------------------------

    def _finish(self, row: BankEntry, state: str, reason: str | None, **values: Any) -> None:
        with self.db.begin() as session:
            stored = session.get(BankEntry, row.id)
            assert stored is not None
            stored.state, stored.reason = state, reason
            for name, value in values.items():
                setattr(stored, name, value)
            stored.updated_at = dt.datetime.now(dt.UTC)
        row.state, row.reason = state, reason
        for name, value in values.items():
            setattr(row, name, value)

    def _view(self, ident: str) -> dict[str, Any]:
        with self.db() as session:
            row = session.get(BankEntry, ident)
            assert row is not None
            return entry_view(row)

    def queue(self, org: str | None, states: tuple[str, ...] = QUEUE_STATES) -> list[dict[str, Any]]:
        with self.db() as session:
            query = select(BankEntry).where(BankEntry.state.in_(states)).order_by(BankEntry.created_at,
                                                                                  BankEntry.id)
            if org is not None:
                query = query.where(BankEntry.org == org)
            return [entry_view(r) for r in session.scalars(query)]

    def resolve(self, ident: str, org: str, *, invoice_id: str | None, dismiss: bool,
                note: str | None) -> dict[str, Any]:
        """An operator's (or provider's) answer to a queued entry: the invoice it pays (a held entry's
        candidate to confirm it), or dismiss it as not an invoice payment."""
        with self.db() as session:
            row = session.get(BankEntry, ident)
            if row is None or row.org != org:
                raise BankError("unknown_bank_entry", f"no bank entry {ident!r} for this org", 404)
            session.expunge(row)
        if row.state not in QUEUE_STATES:
            raise BankError("bank_entry_not_open",
                            f"bank entry {ident} is {row.state}, not in the reconciliation queue",
                            state=row.state)
        if dismiss:
            self._finish(row, DISMISSED, "dismissed", note=note)
            return self._view(ident)
        target = invoice_id or row.candidate_invoice_id
        if not target:
            raise BankError("invoice_required", "name the invoice this entry pays (or dismiss it)", 422)
        if target not in {i.id for i in self._invoices(org)}:
            raise BankError("unknown_invoice", f"no invoice {target!r} of this org", 404)
        if row.reversal or not row.credit:
            raise BankError("bank_entry_not_a_credit", "only credits can be assigned to an invoice", 422)
        self._finish(row, PENDING, None, note=note, invoice_id=target)
        report = ImportReport(row.statement_id, row.message_type)
        self._record(row, target, report)
        return self._view(ident)
