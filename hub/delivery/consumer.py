"""Turns `InvoiceIssued` and `CreditNoteIssued` chaincode events into outbox rows.

The rows and the event checkpoint are written in one database transaction: after a crash either both
are there or neither, so a replayed event finds its rows (and creates nothing) and no event is skipped.
The checkpoint is the block to resume from plus the tx ids of that block already handled, because
`Ledger.events` resumes with a block, not a transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from hub.billing.client import ContractClient
from hub.delivery.outbox import create_deliveries, own_targets
from hub.ledger.base import ChaincodeRejected
from hub.store.checkpoints import read_checkpoint, save_checkpoint

# events that issue a document to deliver, and where the event names it
DOCUMENT_EVENTS = {"InvoiceIssued": "invoice_id", "CreditNoteIssued": "credit_note_id"}
log = logging.getLogger("ledgerhub.delivery")
CONSUMER = "delivery"


class EventConsumer:
    def __init__(self, ledger: Any, db: sessionmaker[Session], *, read_as: str,
                 clock: Callable[[], dt.datetime], org: str | None = None) -> None:
        self.ledger = ledger
        self.client = ContractClient.of(ledger)
        self.db = db
        self.read_as = read_as
        self.clock = clock
        self.org = org  # one hub per org (ADR 0065): only this org's targets get rows

    def checkpoint(self) -> tuple[int, set[str]]:
        with self.db() as session:
            return read_checkpoint(session, CONSUMER)

    def catch_up(self, timeout: float = 0.2, stop: Callable[[], bool] = lambda: False) -> int:
        """Handle every event after the checkpoint; returns how many outbox rows were created.
        Other events (usage batches, payments...) only move the checkpoint, which is saved with the next
        invoice's rows or at the end: replaying them after a crash does nothing."""
        block, seen = self.checkpoint()
        created = 0
        dirty = False
        for event in self.ledger.events(block, timeout=timeout):
            if event.block == block and event.tx_id in seen:
                continue
            if event.block != block:
                block, seen = event.block, set()
            seen.add(event.tx_id)
            if event.name not in DOCUMENT_EVENTS:
                dirty = True
            else:
                payload = json.loads(event.payload)
                document_id = payload[DOCUMENT_EVENTS[event.name]]
                try:
                    invoice = dict(self.client.get_invoice(document_id, as_org=self.read_as).raw)
                except ChaincodeRejected as exc:
                    if self.org is None or exc.code != "forbidden":
                        raise
                    dirty = True  # a hub of one org: another org's document, nothing to deliver here
                    continue
                erp = own_targets(invoice, payload.get("erp") or invoice.get("erp"), self.org)
                with self.db.begin() as session:
                    ids = create_deliveries(session, invoice, erp, self.clock())
                    self._save(session, block, seen)
                dirty = False
                created += len(ids)
                if ids:
                    log.info("outbox rows created", extra={"invoice_id": invoice["id"], "deliveries": ids})
            if stop():
                break
        if dirty:
            with self.db.begin() as session:
                self._save(session, block, seen)
        return created

    def _save(self, session: Session, block: int, seen: set[str]) -> None:
        save_checkpoint(session, CONSUMER, block, seen, self.clock())
