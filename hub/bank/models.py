"""Bank entries seen in imported statements, SEPA mandates and collections (Alembic branch `bank`:
0041_bank, 0042_bank_sepa).

One row per bank booking, keyed by the bank's own reference (`{account}:{AcctSvcrRef|NtryRef}[/{tx}]`), so
the same statement imported twice finds every entry already there. The row is written before the ledger is
asked to record the payment (state `pending`) and finished after, so a crash in between is retried by the
next import, and the ledger's payment id (`bank:{key}`) makes the retry harmless.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.base import Base

# states
RECORDED = "recorded"  # a payment (or a reversal) is on the ledger
REVERSED = "reversed"  # a recorded payment the bank later returned
PENDING = "pending"  # to be recorded: retried by every import (invoice not posted yet, ledger down)
HELD = "held"  # matched by amount, currency and debtor only: an operator confirms
UNMATCHED = "unmatched"  # no invoice found, or the ledger refused: an operator resolves
IGNORED = "ignored"  # not money received (an outgoing debit, a booking not final yet)
DISMISSED = "dismissed"  # an operator decided it is not an invoice payment
QUEUE_STATES = (PENDING, HELD, UNMATCHED)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BankEntry(Base):
    __tablename__ = "bank_entry"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # sha256(key)[:32], for URLs
    key: Mapped[str] = mapped_column(String(400), nullable=False, unique=True)
    org: Mapped[str] = mapped_column(String(200), nullable=False, index=True)  # whose account it is
    statement_id: Mapped[str] = mapped_column(String(200), nullable=False)
    message_type: Mapped[str] = mapped_column(String(10), nullable=False)
    credit: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reversal: Mapped[bool] = mapped_column(Boolean, nullable=False)
    booked: Mapped[bool] = mapped_column(Boolean, nullable=False)
    amount: Mapped[str] = mapped_column(String(40), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    booking_date: Mapped[str | None] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(40))
    quoted_reference: Mapped[str | None] = mapped_column(String(200))
    end_to_end_id: Mapped[str | None] = mapped_column(String(200))
    debtor_name: Mapped[str | None] = mapped_column(String(300))
    return_reason: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    invoice_id: Mapped[str | None] = mapped_column(String(250), index=True)
    candidate_invoice_id: Mapped[str | None] = mapped_column(String(250))
    payment_id: Mapped[str | None] = mapped_column(String(450))
    reverses: Mapped[str | None] = mapped_column(String(40))  # id of the entry this one reversed
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class SepaMandate(Base):
    __tablename__ = "sepa_mandate"

    contract_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider: Mapped[str] = mapped_column(String(200), nullable=False)
    debtor_org: Mapped[str] = mapped_column(String(200), nullable=False)
    debtor_name: Mapped[str] = mapped_column(String(140), nullable=False)
    iban: Mapped[str] = mapped_column(String(34), nullable=False)
    bic: Mapped[str | None] = mapped_column(String(11))
    mandate_id: Mapped[str] = mapped_column(String(35), nullable=False)
    signed_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    scheme: Mapped[str] = mapped_column(String(4), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class SepaCollection(Base):
    __tablename__ = "sepa_collection"

    invoice_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    contract_id: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    mandate_id: Mapped[str] = mapped_column(String(35), nullable=False)
    file: Mapped[str] = mapped_column(String(1000), nullable=False)
    amount: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
