"""Outbox tables of the delivery engine (Alembic branch `delivery`, revision 0002_delivery).

One `Delivery` row per (invoice, target): created in the same database transaction that advances the event
checkpoint, so an `InvoiceIssued` event yields exactly one row per target however often it is replayed.
Its id and `message_uuid` are fixed at creation and reused on every attempt: they are the ERP's
idempotency key. `DeliveryAttempt` keeps the history an operator needs to see what happened.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.base import Base

# states
PENDING = "pending"  # due at next_attempt_at
POSTED = "posted"  # the ERP confirmed; the ledger write (RecordErpPosting) is still to do
DELIVERED = "delivered"  # ERP confirmed and recorded on the ledger
DEAD_LETTER = "dead_letter"  # needs an operator (business rejection, max attempts, misconfiguration)
STATES = (PENDING, POSTED, DELIVERED, DEAD_LETTER)
# `erp_state` of a delivered row whose posting the ledger already recorded, made through another ERP (another
# hub's, or before this outbox was rebuilt): nothing was sent, and this hub cannot read its payments
POSTED_ELSEWHERE = "posted_elsewhere"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("invoice_id", "target", name="uq_delivery_invoice_target"),
        Index("ix_delivery_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(250), nullable=False, index=True)
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False)
    target: Mapped[str] = mapped_column(String(16), nullable=False)  # provider | customer
    org: Mapped[str] = mapped_column(String(200), nullable=False, index=True)  # the target's org
    provider_org: Mapped[str] = mapped_column(String(200), nullable=False)
    customer_org: Mapped[str] = mapped_column(String(200), nullable=False)
    connector: Mapped[str] = mapped_column(String(100), nullable=False)
    message_uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    total: Mapped[str] = mapped_column(String(40), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # True once a send may have reached the ERP without a definite answer: the next attempt looks up first
    needs_lookup: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    erp_messages: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list
    erp_system: Mapped[str | None] = mapped_column(String(100))
    erp_document_id: Mapped[str | None] = mapped_column(String(200))
    erp_details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")  # JSON object
    ledger_tx_id: Mapped[str | None] = mapped_column(String(128))
    erp_state: Mapped[str | None] = mapped_column(String(32))  # last reconciled ERP state
    reconciled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # what to send, for rows whose content is not on the ledger (webhooks; revision 0006_delivery_payload)
    payload: Mapped[str | None] = mapped_column(Text)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(300), ForeignKey("delivery.id", ondelete="CASCADE"), nullable=False, index=True
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)  # deliver | lookup | ledger
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)  # ok | error code
    message: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
