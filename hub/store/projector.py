"""The projector: keeps the read models (contracts, invoices) in step with the ledger's event stream.

The ledger stays the truth. Each event only says *what* changed; the projector reads the current record
back with `evaluate` and upserts it, so applying an event twice, or out of a crash, is harmless. The
checkpoint (block + tx ids handled in it) is persisted, so a restart resumes where it stopped and a fresh
database rebuilds itself from block 0. Routers also write through after their own transactions, so a
caller sees its new invoice at once without waiting for the stream.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.ledger.base import ChaincodeEvent, ChaincodeRejected, LedgerError
from hub.metrics import Metrics
from hub.store.checkpoints import read_checkpoint, save_checkpoint
from hub.store.models import ContractView, InvoiceView

log = logging.getLogger("ledgerhub.projector")
CONSUMER = "read-models"
CONTRACT_EVENTS = {"ContractProposed", "ContractActivated", "ContractAmended"}
INVOICE_EVENTS = {"InvoiceIssued", "InvoicePosted", "PaymentRecorded", "PaymentReversed", "InvoiceDisputed",
                  "CreditNoteIssued"}


class Record(Protocol):
    """A typed answer of the contract client (hub.billing.answers): its JSON as the ledger answered it."""

    @property
    def raw(self) -> Mapping[str, Any]: ...


class HubQueries(Protocol):
    """The queries of the contract client (hub.billing.client.ContractClient) the read models ask, as the
    hub (`as_org=None`). A protocol, so the store layer imports neither the services nor the billing layer."""

    def get_contract(self, contract_id: str, *, as_org: str | None) -> Record: ...

    def get_invoice(self, invoice_id: str, *, as_org: str | None) -> Record: ...

    def get_asset(self, asset_id: str, *, as_org: str | None) -> Record: ...


class HubReader(Protocol):
    """What the read models need of the ledger gateway (hub.services.LedgerGateway): its contract client's
    queries, and the ledger's event stream."""

    ledger: Any
    client: HubQueries


def upsert_contract(session: Session, contract: dict[str, Any]) -> None:
    session.merge(ContractView(
        id=contract["id"], provider=contract["provider"], customer=contract["customer"],
        status=contract.get("status", "PROPOSED"), currency=contract["currency"],
        timezone=contract.get("timezone", "UTC"), start=contract["start"], end=contract.get("end"),
    ))


def upsert_invoice(session: Session, invoice: dict[str, Any], provider: str, customer: str) -> None:
    session.merge(InvoiceView(
        id=invoice["id"], type=invoice.get("type", "invoice"), contract_id=invoice["contract_id"],
        period=invoice.get("period"), provider=provider, customer=customer, status=invoice["status"],
        currency=invoice["currency"], total=str(invoice["total"]), tx_id=invoice.get("tx_id"),
        block=invoice.get("block"),
    ))


class Projector:
    def __init__(self, gateway: HubReader, db: sessionmaker[Session], metrics: Metrics) -> None:
        self.gateway = gateway
        self.db = db
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # other consumers of the stream with their own checkpoints (usage days, ADR 0044), run in this loop
        self.followers: list[Any] = []

    # --- reading the ledger as the hub ---------------------------------------------------------

    def _retrying(self, write: Any) -> None:
        """The API's write-through and the stream may upsert the same row at once; the loser of the insert
        race retries and then updates (merge finds the row)."""
        for attempt in range(3):
            try:
                write()
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def write_contract(self, contract: dict[str, Any]) -> None:
        def write() -> None:
            with self.db.begin() as session:
                upsert_contract(session, contract)

        self._retrying(write)

    def write_invoice(self, invoice: dict[str, Any], block: int | None = None) -> None:
        if block is not None and invoice.get("block") is None:
            invoice = {**invoice, "block": block}
        self._retrying(lambda: self._write_invoice(invoice))

    def _write_invoice(self, invoice: dict[str, Any]) -> None:
        with self.db.begin() as session:
            view = session.get(ContractView, invoice["contract_id"])
            if view is None:
                contract = dict(self.gateway.client.get_contract(invoice["contract_id"], as_org=None).raw)
                upsert_contract(session, contract)
                provider, customer = contract["provider"], contract["customer"]
            else:
                provider, customer = view.provider, view.customer
            if invoice.get("block") is None:
                existing = session.get(InvoiceView, invoice["id"])
                if existing is not None and existing.block is not None:
                    invoice = {**invoice, "block": existing.block}
            upsert_invoice(session, invoice, provider, customer)

    # --- the stream ---------------------------------------------------------------------------

    def apply(self, event: ChaincodeEvent) -> None:
        if event.name not in CONTRACT_EVENTS | INVOICE_EVENTS:
            return
        payload = json.loads(event.payload) if event.payload else {}
        if event.name in CONTRACT_EVENTS:
            contract = self.gateway.client.get_contract(payload["contract_id"], as_org=None)
            self.write_contract(dict(contract.raw))
        else:
            for key in ("invoice_id", "credit_note_id"):
                if payload.get(key):
                    block = event.block if event.name in {"InvoiceIssued", "CreditNoteIssued"} else None
                    invoice = dict(self.gateway.client.get_invoice(payload[key], as_org=None).raw)
                    if key == "credit_note_id" or block is None:
                        self.write_invoice(invoice)
                    else:
                        self.write_invoice(invoice, block=block)
        self.metrics.projected_events.labels(event.name).inc()

    def checkpoint(self) -> tuple[int, set[str]]:
        with self.db() as session:
            return read_checkpoint(session, CONSUMER)

    def _save(self, block: int, tx_ids: set[str]) -> None:
        with self.db.begin() as session:
            save_checkpoint(session, CONSUMER, block, tx_ids)

    def catch_up(self, timeout: float = 0.2) -> int:
        """Apply every event after the checkpoint; returns how many were applied."""
        block, seen = self.checkpoint()
        applied = 0
        for event in self.gateway.ledger.events(block, timeout=timeout):
            if self._stop.is_set():
                break
            if event.block == block and event.tx_id in seen:
                continue
            try:
                self.apply(event)
            except ChaincodeRejected as exc:
                if exc.code != "forbidden":
                    raise
                # a hub of one org (ADR 0065) reads as that org only: another pair's contract is not its own
                log.info("projector: %s in tx %s is not readable by this hub", event.name, event.tx_id)
            if event.block != block:
                block, seen = event.block, set()
            seen.add(event.tx_id)
            self._save(block, seen)
            applied += 1
        return applied

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledgerhub-projector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up(timeout=0.5)
                for follower in self.followers:
                    follower.catch_up(timeout=0.2)
            except (LedgerError, ChaincodeRejected):
                log.warning("projector: ledger call failed; retrying", exc_info=True)
                self._stop.wait(1.0)
            except Exception:
                log.exception("projector failed; retrying")
                self._stop.wait(1.0)
