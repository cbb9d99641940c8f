"""The delivery engine as one service: event consumer, dispatcher, reconciler, and the read/retry calls
the API uses. `install(services)` wires it into a hub app (`Services.delivery`, scheduler jobs)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import ConnectorRegistry
from connectors.base import registry as default_registry
from hub.config import Settings
from hub.delivery.consumer import EventConsumer
from hub.delivery.dispatcher import DeliveryOptions, Dispatcher
from hub.delivery.metrics import attach
from hub.delivery.models import Delivery, DeliveryAttempt
from hub.delivery.outbox import aware, requeue_dead_letter
from hub.delivery.reconcile import Reconciler, ReconcileReport
from hub.scheduler import register_job

log = logging.getLogger("ledgerhub.delivery")


def delivery_view(row: Delivery, attempts: list[DeliveryAttempt] | None = None) -> dict[str, Any]:
    """A delivery as the API shows it (no secrets: the ERP's messages, ids and states only)."""
    view: dict[str, Any] = {
        "id": row.id,
        "invoice_id": row.invoice_id,
        "contract_id": row.contract_id,
        "target": row.target,
        "org": row.org,
        "connector": row.connector,
        "message_uuid": row.message_uuid,
        "state": row.state,
        "attempts": row.attempts,
        "needs_lookup": row.needs_lookup,
        "next_attempt_at": _iso(row.next_attempt_at),
        "last_error": None if row.last_error_code is None else {"code": row.last_error_code,
                                                                "message": row.last_error},
        # a webhook receiver is the tenant's choice of URL: its words are never shown (rows written before
        # this rule may still hold a receiver's body)
        "erp_messages": [] if row.connector == "webhook" else json.loads(row.erp_messages or "[]"),
        "erp_ref": None if row.erp_document_id is None else {
            "system": row.erp_system, "document_id": row.erp_document_id,
            "details": json.loads(row.erp_details or "{}")},
        "ledger_tx_id": row.ledger_tx_id,
        "erp_state": row.erp_state,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "delivered_at": _iso(row.delivered_at),
    }
    if attempts is not None:
        view["history"] = [
            {"attempt": a.attempt, "action": a.action, "outcome": a.outcome, "message": a.message,
             "started_at": _iso(a.started_at), "finished_at": _iso(a.finished_at)}
            for a in attempts
        ]
    return view


def _iso(moment: dt.datetime | None) -> str | None:
    value = aware(moment)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class DeliveryService:
    def __init__(self, ledger: Any, db: sessionmaker[Session], settings: Settings, *,
                 registry: ConnectorRegistry | None = None, options: DeliveryOptions | None = None,
                 clock: Callable[[], dt.datetime] | None = None, worker: str = "dispatcher") -> None:
        self.db = db
        self.settings = settings
        self.options = options or DeliveryOptions.from_settings(settings)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        # the all-orgs hub reads as the provider; a hub of one org as that org (ADR 0065)
        read_as = settings.org or settings.provider_org
        self.consumer = EventConsumer(ledger, db, read_as=read_as, clock=self.clock, org=settings.org)
        self.dispatcher = Dispatcher(ledger, db, settings, registry or default_registry, options=self.options,
                                     clock=self.clock, worker=worker, read_as=read_as)
        self.reconciler = Reconciler(ledger, db, self.dispatcher.connectors, clock=self.clock,
                                     one_org=settings.org is not None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- work -------------------------------------------------------------------------------------

    def consume_events(self, timeout: float = 0.2) -> int:
        return self.consumer.catch_up(timeout=timeout)

    def dispatch_once(self) -> int:
        return self.dispatcher.run_once()

    def reconcile_once(self) -> ReconcileReport:
        return self.reconciler.run_once()

    def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Consume and dispatch until nothing is due (tests, the demo). Rows waiting for a backoff are
        picked up when due, so this returns only when every row is delivered or dead-lettered."""
        for _ in range(max_rounds):
            self.consume_events(timeout=0.05)
            if self.dispatch_once() == 0:
                if not self.open_count():
                    return
                self._stop.wait(0.02)  # rows are waiting for their backoff
        raise TimeoutError("deliveries still open after max_rounds")

    def open_count(self) -> int:
        with self.db() as session:
            return len(session.scalars(select(Delivery.id).where(Delivery.state.in_(("pending", "posted"))))
                       .all())

    def start(self) -> None:
        """Background loop: consume events, dispatch due rows. Several hub replicas may each run one."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ledgerhub-delivery", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.dispatcher.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.consume_events(timeout=0.2)
                if self.dispatch_once() == 0:
                    self._stop.wait(self.options.poll_seconds)
            except Exception:
                log.exception("delivery loop failed; retrying")
                self._stop.wait(self.options.poll_seconds)

    # --- API --------------------------------------------------------------------------------------

    def list(self, *, invoice_id: str | None = None, org: str | None = None,
             limit: int = 500) -> list[dict[str, Any]]:
        with self.db() as session:
            query = select(Delivery).order_by(Delivery.invoice_id, Delivery.target).limit(limit)
            if invoice_id is not None:
                query = query.where(Delivery.invoice_id == invoice_id)
            if org is not None:
                query = query.where(Delivery.org == org)
            return [delivery_view(row) for row in session.scalars(query).all()]

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        with self.db() as session:
            row = session.get(Delivery, delivery_id)
            if row is None:
                return None
            attempts = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == row.id)
                                       .order_by(DeliveryAttempt.id)).all()
            return delivery_view(row, list(attempts))

    def retry(self, delivery_id: str) -> dict[str, Any] | None:
        """Requeue a dead-lettered delivery; None when it is not dead-lettered (or unknown)."""
        with self.db.begin() as session:
            row = requeue_dead_letter(session, delivery_id, self.clock())
            return None if row is None else delivery_view(row)


def install(services: Any, *, start: bool = True, registry: ConnectorRegistry | None = None,
            options: DeliveryOptions | None = None) -> DeliveryService:
    """Wire the engine into a hub app: `services.delivery`, the background loop, the reconciliation job
    (run by the hub scheduler under its DB lease, so one runner at a time)."""
    service = DeliveryService(services.ledger, services.db, services.settings, registry=registry,
                              options=options, clock=services.clock)
    services.delivery = service
    service.dispatcher.metrics = attach(services.metrics, services.db)
    service.dispatcher.resolver = services.resolver  # tests: a name's answers, on purpose
    register_job("delivery-reconcile", lambda s: s.delivery.reconcile_once(),
                 service.options.reconcile_seconds)
    if start:
        service.start()
    return service
