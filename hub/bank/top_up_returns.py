"""A returned prepaid top-up (ADR 0051): a camt.054 reversal (or a debit with a return reason) of a bank
credit that funded a contract's prepaid balance. `ReverseTopUp` takes it back on the ledger (what the balance
still holds, then the open periods' draws, the rest recorded as `unrecovered`), both bank entries are marked
like a returned invoice payment, and both parties get a `prepaid_top_up_returned` alert, once."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from hub.bank.alerts import raise_contract_alert
from hub.bank.models import PENDING, RECORDED, REVERSED, BankEntry
from hub.ledger.base import LedgerError

if TYPE_CHECKING:
    from hub.bank.service import BankImporter, ImportReport


def reverse_top_up(importer: BankImporter, row: BankEntry, original: BankEntry, contract_id: str,
                   report: ImportReport) -> None:
    reason = row.return_reason or "reversal"
    top_up_id, reversal_id = str(original.payment_id), f"bank:{row.key}"
    record = importer._submit(row, report, lambda: importer.client.reverse_top_up(
        contract_id, top_up_id=top_up_id, reversal_id=reversal_id, reason=reason, as_org=row.org))
    if record is None:
        return
    try:
        contract = dict(importer.client.get_contract(contract_id, as_org=row.org).raw)
    except LedgerError:  # reversed on the ledger already; tried again later, ReverseTopUp is idempotent
        importer._finish(row, PENDING, "ledger_unavailable")
        report.queued.append(importer._view(row.id))
        return
    found = record.movement(reversal_id)
    movement: dict[str, Any] = dict(found.raw) if found is not None else {}
    with importer.db.begin() as session:
        back = session.get(BankEntry, original.id)
        if back is not None:
            back.state, back.updated_at = REVERSED, dt.datetime.now(dt.UTC)
        this = session.get(BankEntry, row.id)
        if this is not None:
            this.state, this.reason, this.payment_id = RECORDED, None, original.payment_id
            this.reverses, this.note = original.id, f"prepaid top-up of {contract_id} returned"
            this.updated_at = dt.datetime.now(dt.UTC)
        period = str(row.booking_date or "")[:7] or dt.date.today().isoformat()[:7]
        raise_contract_alert(
            session, contract, kind="prepaid_top_up_returned", key=row.id, period=period,
            message=f"Top-up of {row.amount} {row.currency} for contract {contract_id} was returned by the "
                    f"bank (reason {reason}); balance now {record.raw['balance']}, "
                    f"{movement.get('unrecovered', '0')} already spent could not be taken back",
            amount=row.amount, threshold="0", enqueue=importer.enqueue)
    report.reversed.append({"id": row.id, "bank_reference": row.key, "top_up": contract_id,
                            "payment_id": original.payment_id, "reason": reason,
                            "balance": record.raw["balance"],
                            "unrecovered": movement.get("unrecovered")})
