"""The outbox: creating delivery rows, claiming due ones, and every state change of a row.

Claiming works on both databases and across processes:
- PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` picks due rows no other transaction holds, then stamps
  them with this claim's token and a lease (`claimed_until`);
- SQLite (one writer at a time): a single `UPDATE ... WHERE id IN (SELECT due ... LIMIT n)` stamps them
  atomically.
Every later write of a claimed row is conditional on the claim token, so a worker whose lease ran out (and
whose row another worker took over) cannot overwrite the newer state. A crashed worker's claims simply
expire. Either way the ERP sees the same message UUID, which is what keeps a double send harmless.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.delivery.models import (
    DEAD_LETTER,
    DELIVERED,
    PENDING,
    POSTED,
    POSTED_ELSEWHERE,
    Delivery,
    DeliveryAttempt,
)

MESSAGE_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ledgerhub.dev/delivery")
TARGETS = ("provider", "customer")


def delivery_id(invoice_id: str, target: str) -> str:
    return f"dlv-{invoice_id}-{target}"


def message_uuid(delivery: str) -> str:
    """The ERP idempotency key of a delivery: derived from its id, so even a rebuilt outbox reuses it."""
    return str(uuid.uuid5(MESSAGE_UUID_NAMESPACE, delivery))


def aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes (stored as UTC wall time); make them aware again."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class Claimed:
    """A snapshot of a claimed row: what a worker needs, detached from any session."""

    id: str
    token: str
    invoice_id: str
    contract_id: str
    target: str
    org: str
    connector: str
    message_uuid: str
    state: str
    attempts: int
    needs_lookup: bool
    erp_system: str | None
    erp_document_id: str | None
    erp_details: dict[str, Any]


def own_targets(invoice: dict[str, Any], erp: dict[str, Any] | None, org: str | None) -> dict[str, Any]:
    """The invoice's ERP targets this hub delivers: all of them for the all-orgs hub (`org` None); for a
    hub of one org (ADR 0065) only the target that is its org (its own ERP: the provider's receivable, the
    customer's payable); the other party's hub posts the other side."""
    targets = dict(erp or {})
    if org is None:
        return targets
    return {t: c for t, c in targets.items() if t in TARGETS and str(invoice.get(t)) == org}


def create_deliveries(session: Session, invoice: dict[str, Any], erp: dict[str, Any] | None,
                      now: dt.datetime) -> list[str]:
    """Outbox rows for an issued invoice, one per target with a connector; existing rows are kept as they
    are (a replayed event changes nothing). Runs inside the caller's transaction."""
    created = []
    for target in TARGETS:
        connector = (erp or {}).get(target)
        if not connector:
            continue
        did = delivery_id(str(invoice["id"]), target)
        if session.get(Delivery, did) is not None:
            continue
        session.add(
            Delivery(
                id=did,
                invoice_id=str(invoice["id"]),
                contract_id=str(invoice.get("contract_id") or ""),
                target=target,
                org=str(invoice[target]),
                provider_org=str(invoice["provider"]),
                customer_org=str(invoice["customer"]),
                connector=str(connector),
                message_uuid=message_uuid(did),
                currency=str(invoice.get("currency") or ""),
                total=str(invoice.get("total") or ""),
                state=PENDING,
                attempts=0,
                needs_lookup=False,
                next_attempt_at=now,
                erp_messages="[]",
                erp_details="{}",
                created_at=now,
                updated_at=now,
            )
        )
        created.append(did)
    session.flush()
    return created


def claim_due(db: sessionmaker[Session], worker: str, limit: int, lease: dt.timedelta,
              now: dt.datetime) -> list[Claimed]:
    token = f"{worker}:{uuid.uuid4().hex[:12]}"
    until = now + lease
    due = and_(
        Delivery.state.in_((PENDING, POSTED)),
        Delivery.next_attempt_at <= now,
        or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
    )
    with db.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            ids = session.scalars(
                select(Delivery.id).where(due).order_by(Delivery.next_attempt_at).limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if ids:
                session.execute(update(Delivery).where(Delivery.id.in_(ids))
                                .values(claimed_by=token, claimed_until=until))
        else:
            subquery = select(Delivery.id).where(due).order_by(Delivery.next_attempt_at).limit(limit)
            session.execute(
                update(Delivery).where(Delivery.id.in_(subquery.scalar_subquery()), due)
                .values(claimed_by=token, claimed_until=until)
                .execution_options(synchronize_session=False)
            )
        rows = session.scalars(select(Delivery).where(Delivery.claimed_by == token)).all()
        return [
            Claimed(
                id=r.id, token=token, invoice_id=r.invoice_id, contract_id=r.contract_id, target=r.target,
                org=r.org, connector=r.connector, message_uuid=r.message_uuid, state=r.state,
                attempts=r.attempts, needs_lookup=r.needs_lookup, erp_system=r.erp_system,
                erp_document_id=r.erp_document_id, erp_details=json.loads(r.erp_details or "{}"),
            )
            for r in rows
        ]


class Outbox:
    """Conditional writes of one claimed row (each in its own short transaction)."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def _update(self, item: Claimed, values: dict[str, Any], attempt: dict[str, Any] | None = None) -> bool:
        with self.db.begin() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == item.id, Delivery.claimed_by == item.token)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False  # our claim expired and someone else holds the row now
            if attempt is not None:
                session.add(DeliveryAttempt(delivery_id=item.id, worker=item.token, **attempt))
            return True

    def payload(self, item: Claimed) -> dict[str, Any]:
        """What a row whose content is not on the ledger carries (a webhook's URL, secret and body)."""
        with self.db() as session:
            row = session.get(Delivery, item.id)
            return json.loads(row.payload or "{}") if row is not None else {}

    def mark_sending(self, item: Claimed, attempt: int, now: dt.datetime) -> bool:
        """Write-ahead before the ERP call: from here on a crash means "maybe sent" -> look up first."""
        return self._update(item, {"attempts": attempt, "needs_lookup": True, "updated_at": now})

    def mark_posted(self, item: Claimed, system: str, document_id: str, details: dict[str, str],
                    attempt: dict[str, Any], now: dt.datetime) -> bool:
        return self._update(item, {
            "state": POSTED, "needs_lookup": False, "erp_system": system, "erp_document_id": document_id,
            "erp_details": json.dumps(details, sort_keys=True), "last_error_code": None, "last_error": None,
            "updated_at": now,
        }, attempt)

    def mark_delivered(self, item: Claimed, tx_id: str | None, attempt: dict[str, Any],
                       now: dt.datetime) -> bool:
        return self._update(item, {
            "state": DELIVERED, "ledger_tx_id": tx_id, "delivered_at": now, "claimed_until": None,
            "claimed_by": None, "last_error_code": None, "last_error": None, "updated_at": now,
        }, attempt)

    def mark_posted_elsewhere(self, item: Claimed, ref: dict[str, Any], attempt: dict[str, Any],
                              now: dt.datetime) -> bool:
        """Delivered without sending: the ledger records this target's posting (`ref`), which this hub's
        ERP does not hold. The row carries the ledger's reference and is left out of reconciliation."""
        return self._update(item, {
            "state": DELIVERED, "needs_lookup": False, "erp_system": str(ref.get("system") or item.connector),
            "erp_document_id": str(ref.get("document_id") or ""), "ledger_tx_id": ref.get("tx_id"),
            "erp_state": POSTED_ELSEWHERE, "delivered_at": now, "claimed_until": None, "claimed_by": None,
            "last_error_code": None, "last_error": None, "updated_at": now,
        }, attempt)

    def retry_later(self, item: Claimed, at: dt.datetime, *, code: str, message: str, needs_lookup: bool,
                    erp_messages: list[str] | None, attempt: dict[str, Any] | None, now: dt.datetime,
                    attempts: int | None = None) -> bool:
        values: dict[str, Any] = {
            "next_attempt_at": at, "claimed_until": None, "claimed_by": None, "needs_lookup": needs_lookup,
            "last_error_code": code, "last_error": message[:4000], "updated_at": now,
        }
        if attempts is not None:
            values["attempts"] = attempts
        if erp_messages is not None:
            values["erp_messages"] = json.dumps(erp_messages)
        return self._update(item, values, attempt)

    def postpone(self, item: Claimed, at: dt.datetime, now: dt.datetime) -> bool:
        """Not attempted (circuit open): only move the due time, keep everything else."""
        return self._update(item, {"next_attempt_at": at, "claimed_until": None, "claimed_by": None,
                                   "updated_at": now})

    def dead_letter(self, item: Claimed, *, code: str, message: str, erp_messages: list[str],
                    needs_lookup: bool, attempt: dict[str, Any] | None, now: dt.datetime,
                    attempts: int | None = None) -> bool:
        values: dict[str, Any] = {
            "state": DEAD_LETTER, "claimed_until": None, "claimed_by": None, "needs_lookup": needs_lookup,
            "last_error_code": code, "last_error": message[:4000], "erp_messages": json.dumps(erp_messages),
            "updated_at": now,
        }
        if attempts is not None:
            values["attempts"] = attempts
        return self._update(item, values, attempt)


def requeue_dead_letter(session: Session, delivery: str, now: dt.datetime) -> Delivery | None:
    """Operator retry: a dead-lettered row becomes pending with a fresh attempt budget. Its id and message
    UUID stay: if the ERP did post it after all, the resend returns that posting."""
    row = session.scalars(
        select(Delivery).where(Delivery.id == delivery).with_for_update()
    ).one_or_none()
    if row is None or row.state != DEAD_LETTER:
        return None
    # posted in the ERP already (only the ledger write failed): do not send again, record again
    row.state = POSTED if row.erp_document_id else PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.claimed_by = None
    row.claimed_until = None
    row.updated_at = now
    session.flush()
    return row
