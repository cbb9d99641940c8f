"""The provider hub's money job (ADR 0051), every 15 s (`money` in the scheduler) and callable by tests:

- progressive billing: for each active contract with a `billing_threshold`, every running period whose
  interim invoice is due (`GetRunning`) gets it (`IssueInterimInvoice`); the ledger refuses one that is not
  due (`interim_not_due`), so a second hub process or a retry never bills the same usage twice. The
  `InvoiceIssued` event delivers it like any invoice.
- low prepaid balance: a balance the ledger flags `low` raises `prepaid_low_balance` for both parties, once
  per crossing (the alert id carries the ledger's crossing id), and, when the contract's
  `prepaid.top_up_amount` is set and it has a SEPA mandate, writes one pain.008 top-up collection quoting
  the contract's top-up reference (its bank credit funds the balance through the statement import),
  exactly once per crossing: the same write-once file and `sepa_collection` row as invoice collections.
- contract end: an ENDED contract with a balance left is refunded by a credit note (`RefundPrepaid`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chaincode import creditor_ref
from hub.bank.alerts import raise_contract_alert
from hub.bank.models import SepaCollection, SepaMandate
from hub.bank.sepa import _write_once, build_pain008
from hub.billing.answers import Invoice
from hub.billing.client import ContractClient
from hub.ledger.base import ChaincodeRejected, LedgerError
from hub.store.models import ContractView

log = logging.getLogger("ledgerhub.bank.money")
MAX_INTERIMS_PER_RUN = 20  # a contract far behind catches up over several runs
TOP_UP_LEAD_DAYS = 2


def top_up_collection_id(contract_id: str, low_id: str) -> str:
    return f"topup-{contract_id}-{hashlib.sha256(low_id.encode()).hexdigest()[:16]}"


class MoneyJobs:
    def __init__(self, gateway: Any, db: sessionmaker[Session], *, parties: Mapping[str, Any],
                 directory: Path, enqueue: Callable[..., None] | None = None,
                 write_invoice: Callable[[dict], None] | None = None) -> None:
        self.gateway, self.db, self.parties, self.directory = gateway, db, parties, directory
        self.client = ContractClient.of(gateway)
        self.enqueue, self.write_invoice = enqueue, write_invoice

    def run_once(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"interims": [], "alerts": [], "top_ups": [], "refunds": []}
        with self.db() as session:
            query = select(ContractView).where(ContractView.status.in_(("ACTIVE", "ENDED")))
            rows = [(c.id, c.provider) for c in session.scalars(query.order_by(ContractView.id))]
        for contract_id, provider in rows:
            try:
                self._contract(contract_id, provider, out)
            except (ChaincodeRejected, LedgerError) as exc:  # the next run tries again
                log.warning("money job: contract %s: %s", contract_id, exc)
        return out

    def _contract(self, contract_id: str, provider: str, out: dict[str, list[str]]) -> None:
        client = self.client
        agreed = client.get_contract(contract_id, as_org=provider)
        contract = dict(agreed.raw)
        if agreed.billing_threshold is not None and agreed.status == "ACTIVE":
            for view in client.get_running(contract_id, as_org=provider).periods:
                if view.interim_due:
                    out["interims"] += self._interims(contract, view.period)
        prepaid = client.get_prepaid(contract_id, as_org=provider)
        if not prepaid.movements:
            return
        if (low := prepaid.low) is not None:
            out["alerts"] += self._low_alert(contract, low)
            if (written := self._top_up(contract, low)) is not None:
                out["top_ups"].append(written)
        if agreed.status == "ENDED" and prepaid.balance > 0:
            try:
                note = client.refund_prepaid(contract_id, as_org=provider)
            except ChaincodeRejected as exc:
                log.info("prepaid refund of %s not yet: %s", contract_id, exc.code)
            else:
                out["refunds"].append(note.id)
                self._project(note)

    def _interims(self, contract: Mapping[str, Any], period: str) -> list[str]:
        issued = []
        for _ in range(MAX_INTERIMS_PER_RUN):
            try:
                invoice = self.client.issue_interim_invoice(contract["id"], period,
                                                            as_org=contract["provider"])
            except ChaincodeRejected as exc:
                if exc.code not in ("interim_not_due", "period_closed"):
                    raise
                break
            issued.append(invoice.id)
            self._project(invoice)
        return issued

    def _project(self, invoice: Invoice | Mapping[str, Any]) -> None:
        """Write an invoice through to the read model (a typed answer, or a record as the ledger answered:
        the prepaid refund route hands its answer here)."""
        record = dict(invoice.raw) if isinstance(invoice, Invoice) else dict(invoice)
        if self.write_invoice is not None:
            try:
                self.write_invoice(record)
            except Exception:  # the projector catches up from the event stream anyway
                log.warning("read model update after %s failed", record.get("id"), exc_info=True)

    def _low_alert(self, contract: Mapping[str, Any], low: Mapping[str, Any]) -> list[str]:
        key = hashlib.sha256(str(low["id"]).encode()).hexdigest()[:16]
        with self.db.begin() as session:
            return raise_contract_alert(
                session, contract, kind="prepaid_low_balance", key=key, period=str(low["at"])[:7],
                message=f"The prepaid balance of contract {contract['id']} is {low['balance']} "
                        f"{contract['currency']}, below {low['threshold']}",
                amount=str(low["balance"]), threshold=str(low["threshold"]), enqueue=self.enqueue)

    def _top_up(self, contract: Mapping[str, Any], low: Mapping[str, Any]) -> str | None:
        amount = (contract.get("prepaid") or {}).get("top_up_amount")
        if amount is None:
            return None
        collection = top_up_collection_id(contract["id"], str(low["id"]))
        with self.db() as session:
            mandate = session.get(SepaMandate, contract["id"])
            if mandate is None or session.get(SepaCollection, collection) is not None:
                return None
            earlier = session.scalar(select(SepaCollection.invoice_id).where(
                SepaCollection.mandate_id == mandate.mandate_id))
            session.expunge(mandate)
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{collection}.pain008.xml"
        wrote = False
        if not final.exists():
            day = dt.date.fromisoformat(str(low["at"])[:10]) + dt.timedelta(days=TOP_UP_LEAD_DAYS)
            data = build_pain008({"id": collection, "total": str(amount), "provider": contract["provider"]},
                                 mandate, self.parties.get(contract["provider"]) or {},
                                 sequence="RCUR" if earlier else "FRST", collection_date=day,
                                 reference=creditor_ref.for_top_up(contract["id"]))
            wrote = _write_once(final, data)
        with self.db.begin() as session:
            if session.get(SepaCollection, collection) is None:
                session.add(SepaCollection(invoice_id=collection, contract_id=contract["id"],
                                           mandate_id=mandate.mandate_id, file=str(final),
                                           amount=str(amount)))
        return collection if wrote else None
