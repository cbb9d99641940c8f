"""Lifecycle webhooks (ADR 0053): `contract.activated`, `contract.amended`, `invoice.issued`,
`invoice.posted`, `invoice.paid`, `invoice.settled`, `invoice.disputed`, `credit_note.issued`, sent to the
URLs each org subscribed (`POST /v1/webhooks`), signed and delivered through the outbox exactly as alert
webhooks are (the registry's `webhook` connector, hub/delivery/webhooks.py: same HMAC signature, retries,
breaker, dead letters; ADR 0060).

The source is the ledger's event stream, not the API handlers: a follower of the projector with its own
checkpoint (`lifecycle-webhooks`) maps each chaincode event to lifecycle events, so every event is seen once
whichever hub process, API call, scheduler job or ERP reconciliation caused it, and a restart resumes from
the checkpoint. Each lifecycle event's id is derived from (tx id, type, subject), and each outbox row's id
from (event id, subscription), written with the checkpoint in one database transaction: replaying the
stream (a crash, a second hub process) enqueues nothing twice. Receivers de-duplicate on the event `id`.

`contract.amended` is emitted for the ledger events named in `AMENDMENT_EVENTS` (`ContractAmended`, set by
`AcceptAmendment`, ADR 0046).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.billing.answers import Contract, Invoice
from hub.delivery.models import PENDING, Delivery
from hub.delivery.outbox import message_uuid
from hub.delivery.webhooks import CONNECTOR
from hub.ledger.base import ChaincodeEvent, ChaincodeRejected
from hub.services import LedgerGateway
from hub.store.base import Base
from hub.store.checkpoints import read_checkpoint, save_checkpoint

log = logging.getLogger("ledgerhub.lifecycle")
CONSUMER = "lifecycle-webhooks"
EVENT_TYPES = ("contract.activated", "contract.amended", "invoice.issued", "invoice.posted", "invoice.paid",
               "invoice.settled", "invoice.disputed", "credit_note.issued")
# the ledger event an amendment's acceptance sets (chaincode, amendments work); any of these names
AMENDMENT_EVENTS = frozenset({"ContractAmended"})
SIMPLE = {"ContractActivated": "contract.activated", "InvoiceIssued": "invoice.issued",
          "InvoicePosted": "invoice.posted", "InvoiceDisputed": "invoice.disputed",
          "CreditNoteIssued": "credit_note.issued"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WebhookSubscription(Base):
    """One org's webhook URL for lifecycle events (Alembic branch `lifecycle_webhooks`, 0053)."""

    __tablename__ = "webhook_subscription"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    secret: Mapped[str] = mapped_column(String(200), nullable=False)
    events: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of event types
    since_block: Mapped[int] = mapped_column(Integer, nullable=False)  # events from this block on
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class LifecycleEventRow(Base):
    """Every lifecycle event the hub saw, once (what was sent is in the delivery outbox)."""

    __tablename__ = "lifecycle_event"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    subject: Mapped[str] = mapped_column(String(250), nullable=False, index=True)
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False)
    provider: Mapped[str] = mapped_column(String(200), nullable=False)
    customer: Mapped[str] = mapped_column(String(200), nullable=False)
    tx_id: Mapped[str] = mapped_column(String(128), nullable=False)
    block: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


@dataclass(frozen=True)
class LifecycleEvent:
    id: str
    type: str
    subject: str
    contract_id: str
    provider: str
    customer: str
    tx_id: str
    block: int
    body: bytes


def event_id(tx_id: str, kind: str, subject: str) -> str:
    """Stable across replays and hub processes: the same ledger transaction gives the same id."""
    return "evt-" + hashlib.sha256(f"{tx_id}\x00{kind}\x00{subject}".encode()).hexdigest()[:32]


def body_of(eid: str, kind: str, event: ChaincodeEvent, contract_id: str, data: dict[str, Any]) -> bytes:
    """What a receiver gets: canonical JSON, the same bytes on every retry (the signature adds the time)."""
    return json.dumps({"id": eid, "type": kind, "contract_id": contract_id, "ledger_event": event.name,
                       "tx_id": event.tx_id, "block": event.block, "data": data},
                      sort_keys=True, separators=(",", ":")).encode()


class LifecycleEvents:
    """The projector's follower that turns ledger events into lifecycle webhooks."""

    def __init__(self, gateway: LedgerGateway, db: sessionmaker[Session]) -> None:
        self.gateway = gateway
        self.db = db
        self._lock = threading.Lock()

    # --- mapping -------------------------------------------------------------------------------

    def lifecycle(self, event: ChaincodeEvent) -> list[LifecycleEvent]:
        name = event.name
        if name not in SIMPLE and name != "PaymentRecorded" and name not in AMENDMENT_EVENTS:
            return []
        payload = json.loads(event.payload) if event.payload else {}
        kinds: list[str]
        if name in AMENDMENT_EVENTS:
            kinds = ["contract.amended"]
        elif name == "PaymentRecorded":
            kinds = ["invoice.paid"] + (["invoice.settled"] if payload.get("status") == "SETTLED" else [])
        else:
            kinds = [SIMPLE[name]]
        try:
            record: Contract | Invoice
            if kinds[0].startswith("contract."):
                record = self.gateway.client.get_contract(payload["contract_id"], as_org=None)
                contract_id = subject = record.id
            else:
                record = self.gateway.client.get_invoice(payload["invoice_id"], as_org=None)
                contract_id = record.contract_id
                # CreditNoteIssued names the invoice and the note it wrote; the webhook is about the note
                subject = payload.get("credit_note_id") or payload["invoice_id"]
        except ChaincodeRejected as exc:  # a record this hub holds no party identity for: not its events
            log.info("lifecycle: %s in tx %s not readable here (%s)", name, event.tx_id, exc.code)
            return []
        out = []
        for kind in kinds:
            eid = event_id(event.tx_id, kind, subject)
            body = body_of(eid, kind, event, contract_id, payload)
            out.append(LifecycleEvent(eid, kind, subject, contract_id, record.provider, record.customer,
                                      event.tx_id, event.block, body))
        return out

    # --- the stream ------------------------------------------------------------------------------

    def apply(self, session: Session, event: ChaincodeEvent) -> int:
        """Record the event's lifecycle events and enqueue their webhooks (inside `session`)."""
        queued = 0
        for item in self.lifecycle(event):
            if session.get(LifecycleEventRow, item.id) is None:
                session.add(LifecycleEventRow(
                    id=item.id, type=item.type, subject=item.subject, contract_id=item.contract_id,
                    provider=item.provider, customer=item.customer, tx_id=item.tx_id, block=item.block,
                    body=item.body.decode()))
            subscriptions = session.scalars(select(WebhookSubscription).where(
                WebhookSubscription.org.in_([item.provider, item.customer]),
                WebhookSubscription.since_block <= item.block))
            for sub in subscriptions:
                if item.type in json.loads(sub.events):
                    queued += enqueue(session, item, sub)
        return queued

    def checkpoint(self) -> tuple[int, set[str]]:
        with self.db() as session:
            return read_checkpoint(session, CONSUMER)

    def catch_up(self, timeout: float = 0.0) -> int:
        """Handle every event after the checkpoint; returns how many webhook deliveries were enqueued."""
        with self._lock:
            block, seen = self.checkpoint()
            queued = 0
            for event in self.gateway.ledger.events(block, timeout=timeout):
                if event.block == block and event.tx_id in seen:
                    continue
                if event.block != block:
                    block, seen = event.block, set()
                seen.add(event.tx_id)
                try:
                    with self.db.begin() as session:  # the rows and the checkpoint: all or nothing
                        queued += self.apply(session, event)
                        save_checkpoint(session, CONSUMER, block, seen)
                except IntegrityError:  # another hub process handled this event at the same moment
                    log.info("lifecycle: tx %s handled concurrently", event.tx_id)
            return queued


def enqueue(session: Session, item: LifecycleEvent, sub: WebhookSubscription) -> int:
    """The outbox row for one event and one subscription (1 if new); its id is fixed by both."""
    did = f"whk-{item.id}-{sub.id}"
    if session.get(Delivery, did) is not None:
        return 0
    now = utcnow()
    session.add(Delivery(
        # (invoice_id, target) is unique in the outbox: the event id and the subscription
        id=did, invoice_id=item.id, contract_id=item.contract_id,
        target="ws-" + hashlib.sha256(sub.id.encode()).hexdigest()[:12],
        org=sub.org, provider_org=item.provider, customer_org=item.customer, connector=CONNECTOR,
        message_uuid=message_uuid(did), currency="", total="0", state=PENDING, attempts=0,
        needs_lookup=False, next_attempt_at=now, erp_messages="[]", erp_details="{}", created_at=now,
        updated_at=now, payload=json.dumps({"url": sub.url, "secret": sub.secret, "event": item.type,
                                            "body": item.body.decode()}),
    ))
    return 1
