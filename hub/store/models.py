"""The hub's own tables (Alembic branch `0001_core`).

The ledger is the source of truth; these tables are what the hub needs *around* it: the idempotency record
of each usage message (so a replay answers exactly like the first call), read models the projector fills
from the ledger's event stream (listing invoices, finding active contracts for the scheduler, which the
chaincode cannot list), the projector's checkpoint, and the scheduler's single-runner lease.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.base import Base


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IdempotencyRecord(Base):
    """The first final answer given for one usage message. Written only after the ledger committed, so a
    failed attempt (ledger down, unknown commit status) leaves no record and can simply be retried."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("device_id", "message_id", name="uq_idempotency_record_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(200), nullable=False)
    message_id: Mapped[str] = mapped_column(String(200), nullable=False)
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    tx_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ContractView(Base):
    """Contracts as last seen on the ledger (the chaincode has no 'list contracts' query)."""

    __tablename__ = "contract_view"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    customer: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    start: Mapped[str] = mapped_column(String(10), nullable=False)
    end: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )


class InvoiceView(Base):
    """Invoices and credit notes as last seen on the ledger, for filtered listing."""

    __tablename__ = "invoice_view"

    id: Mapped[str] = mapped_column(String(250), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), nullable=False, default="invoice")
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    period: Mapped[str | None] = mapped_column(String(7))
    provider: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    customer: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    total: Mapped[str] = mapped_column(String(40), nullable=False)
    tx_id: Mapped[str | None] = mapped_column(String(128))
    block: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )


class EventCheckpoint(Base):
    """Where a consumer of the ledger's event stream stopped: the block to resume from and the tx ids of
    that block already handled (Ledger.events may resume with the same block)."""

    __tablename__ = "event_checkpoint"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tx_ids: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )


class SchedulerLease(Base):
    """One row per lease name; whoever holds an unexpired lease runs the scheduled jobs."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class UsageDay(Base):
    """Daily usage aggregates (ADR 0044): one row per (contract, period, local day, device), holding the
    rating engine's own aggregate (`BatchAggregate.to_json`) of that day's readings from that device, so a
    chart reads O(days x devices) rows and cumulative cost is the chaincode's rating of merged days.
    `block` is the last block that changed the row: the version that live updates ask for."""

    __tablename__ = "usage_day"

    contract_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    aggregate: Mapped[str] = mapped_column(Text, nullable=False)
    block: Mapped[int] = mapped_column(Integer, nullable=False, index=True)


class UsageDayTx(Base):
    """Usage transactions already folded into `usage_day`: written in the same database transaction as
    the rows, so a transaction is counted exactly once whoever replays the event stream."""

    __tablename__ = "usage_day_tx"

    tx_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, nullable=False)
    readings: Mapped[int] = mapped_column(Integer, nullable=False)
