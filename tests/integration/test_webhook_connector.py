"""Webhooks are deliveries of the registry's `webhook` connector (ADR 0060): the dispatcher finds it in the
connector registry like any ERP connector and runs its one attempt path for it (write-ahead, breaker,
retries with backoff, dead letters, metrics), sending to a real HTTP receiver on loopback. No ledger is
given to the dispatcher: a webhook never touches it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.base import ConnectorRegistry, registry
from hub.config import Settings
from hub.delivery.dispatcher import Dispatcher
from hub.delivery.metrics import DeliveryMetrics
from hub.delivery.models import Delivery
from hub.delivery.outbox import requeue_dead_letter
from hub.delivery.service import delivery_view
from hub.delivery.webhooks import DELIVERY_HEADER, WebhookConnector, enqueue_webhook
from hub.portal.alerts import verify_webhook
from hub.store.session import make_engine, make_sessionmaker, migrate
from tests.helpers.delivery import FAST
from tests.helpers.webhooks import LOCAL_RECEIVERS, Receiver

pytestmark = pytest.mark.integration
SECRET = "receiver-shared-secret-0123"
BODY = b'{"id":"alr-1","type":"alert.raised"}'


class CountingWebhook(WebhookConnector):
    """The real webhook connector, registered under its name in a registry of the test's own: every row the
    dispatcher sends is seen here, so the rows go through the registry, not around it."""

    sent: list[str] = []

    def deliver(self, document: Any, delivery: Any) -> Any:
        CountingWebhook.sent.append(delivery.id)
        return super().deliver(document, delivery)


def make_dispatcher(tmp_path: Path, connectors: ConnectorRegistry = registry, **options: Any) -> Dispatcher:
    settings = Settings(data_dir=tmp_path / "hub", **LOCAL_RECEIVERS)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    return Dispatcher(None, make_sessionmaker(engine), settings, connectors,
                      options=dataclasses.replace(FAST, concurrency=1, batch=4, **options))


def enqueue(dispatcher: Dispatcher, alert_id: str, url: str) -> str:
    alert = SimpleNamespace(id=alert_id, contract_id="ctr-wh", org="CustomerMSP", currency="EUR",
                            forecast_total="12.50")
    with dispatcher.db.begin() as session:
        return enqueue_webhook(session, alert, {"url": url, "secret": SECRET}, BODY)


def row(dispatcher: Dispatcher, did: str) -> dict[str, Any]:
    from sqlalchemy import select

    from hub.delivery.models import DeliveryAttempt

    with dispatcher.db() as session:
        found = session.get(Delivery, did)
        assert found is not None
        history = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == did)
                                  .order_by(DeliveryAttempt.id)).all()
        return delivery_view(found, list(history))


def drain(dispatcher: Dispatcher, *ids: str, rounds: int = 2000) -> None:
    """Dispatch until every row is delivered or dead-lettered (rows wait out their short backoff)."""
    for _ in range(rounds):
        if all(row(dispatcher, did)["state"] in ("delivered", "dead_letter") for did in ids):
            return
        if dispatcher.run_once() == 0:
            time.sleep(0.01)
    raise AssertionError("deliveries still open")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_webhook_connector_is_in_the_registry() -> None:
    assert "webhook" in registry.names()  # the `ledgerhub.connectors` entry point, like every ERP connector
    assert registry.factory("webhook") is WebhookConnector


def test_a_webhook_is_retried_then_delivered_through_the_registry_connector(tmp_path: Path) -> None:
    connectors = ConnectorRegistry()
    connectors.register("webhook", CountingWebhook)
    CountingWebhook.sent.clear()
    dispatcher = make_dispatcher(tmp_path, connectors)
    metrics = CollectorRegistry()
    dispatcher.metrics = DeliveryMetrics(metrics, dispatcher.db)
    receiver = Receiver([503])  # down for the first try
    try:
        did = enqueue(dispatcher, "alr-retry", receiver.url)
        drain(dispatcher, did)
    finally:
        receiver.close()
        dispatcher.close()
    view = row(dispatcher, did)
    assert view["state"] == "delivered" and view["attempts"] == 2 and view["needs_lookup"] is False
    assert view["erp_ref"] == {"system": "webhook", "document_id": "HTTP 200 OK", "details": {}}
    assert view["ledger_tx_id"] is None  # nothing on the ledger
    assert [(h["attempt"], h["action"], h["outcome"]) for h in view["history"]] == [
        (1, "deliver", "erp_unavailable"), (2, "deliver", "ok"), (2, "ledger", "skipped")]
    assert CountingWebhook.sent == [did, did]
    assert [status for _, _, status in receiver.requests] == [503, 200]
    for headers, body, _ in receiver.requests:  # the same delivery id on every try, signed afresh
        assert headers[DELIVERY_HEADER] == did and body == BODY
        assert verify_webhook(SECRET, body, headers)
    labels = {"connector": "webhook", "action": "deliver"}
    assert metrics.get_sample_value("ledgerhub_erp_call_seconds_count", {**labels, "outcome": "ok"}) == 1
    assert metrics.get_sample_value("ledgerhub_erp_call_seconds_count",
                                    {**labels, "outcome": "erp_unavailable"}) == 1


def test_a_webhook_is_dead_lettered_after_its_attempts_and_an_operator_retry_delivers_it(tmp_path: Path
                                                                                         ) -> None:
    dispatcher = make_dispatcher(tmp_path, max_attempts=3)
    receiver = Receiver([503] * 3)
    try:
        did = enqueue(dispatcher, "alr-dead", receiver.url)
        drain(dispatcher, did)
        view = row(dispatcher, did)
        assert view["state"] == "dead_letter" and view["attempts"] == 3 and view["needs_lookup"] is False
        assert view["last_error"] == {
            "code": "erp_unavailable",
            "message": "gave up after 3 attempts: webhook receiver answered HTTP 503 Service Unavailable"}
        assert len(receiver.requests) == 3
        with dispatcher.db.begin() as session:  # POST /v1/deliveries/{id}/retry
            assert requeue_dead_letter(session, did, dt.datetime.now(dt.UTC)) is not None
        drain(dispatcher, did)
    finally:
        receiver.close()
        dispatcher.close()
    view = row(dispatcher, did)
    assert view["state"] == "delivered" and view["attempts"] == 1
    assert [s for _, _, s in receiver.requests] == [503, 503, 503, 200]


def test_a_refusing_receiver_dead_letters_at_once_without_its_body(tmp_path: Path) -> None:
    dispatcher = make_dispatcher(tmp_path)
    receiver = Receiver([404], body=b"<h1>internal admin</h1>")
    try:
        did = enqueue(dispatcher, "alr-404", receiver.url)
        drain(dispatcher, did)
    finally:
        receiver.close()
        dispatcher.close()
    view = row(dispatcher, did)
    assert view["state"] == "dead_letter" and view["attempts"] == 1 and view["needs_lookup"] is False
    assert view["last_error"] == {"code": "erp_rejected",
                                  "message": "webhook receiver refused: HTTP 404 Not Found"}
    assert "internal admin" not in json.dumps(view)


def test_the_breaker_opens_per_receiver_and_spares_the_attempts(tmp_path: Path) -> None:
    dispatcher = make_dispatcher(tmp_path, breaker_threshold=2, breaker_open_seconds=3600, max_attempts=50)
    down = f"http://127.0.0.1:{closed_port()}/hook"
    host = down.split("/")[2]
    receiver = Receiver([])
    try:
        first, second = enqueue(dispatcher, "alr-b1", down), enqueue(dispatcher, "alr-b2", down)
        for _ in range(2000):  # until the breaker of that host opened and both rows wait for it
            if dispatcher.breaker.state(f"webhook:{host}") == "open" and dispatcher.run_once() == 0:
                break
            dispatcher.run_once()
            time.sleep(0.01)
        assert dispatcher.breaker.state(f"webhook:{host}") == "open"
        rows = [row(dispatcher, did) for did in (first, second)]
        # two failed attempts opened it; after that both rows were postponed, not attempted
        assert sum(r["attempts"] for r in rows) == 2
        assert all(r["state"] == "pending" for r in rows)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)  # the breaker's hour, not a backoff
        due = [dt.datetime.fromisoformat(r["next_attempt_at"].replace("Z", "+00:00")) for r in rows]
        assert all(moment > later for moment in due)
        # another receiver is not held up by that one's breaker
        other = enqueue(dispatcher, "alr-b3", receiver.url)
        drain(dispatcher, other)
        assert row(dispatcher, other)["state"] == "delivered"
    finally:
        receiver.close()
        dispatcher.close()


def test_the_reconciler_does_not_ask_a_delivered_webhook_for_payments(tmp_path: Path) -> None:
    """A webhook row has no ERP document: reconciliation skips it instead of asking the connector for a
    status it cannot have (which answered `ConnectorConfigError` on every run)."""
    from hub.delivery.reconcile import Reconciler

    dispatcher = make_dispatcher(tmp_path)
    receiver = Receiver([])
    try:
        did = enqueue(dispatcher, "alr-reconcile", receiver.url)
        drain(dispatcher, did)
        assert row(dispatcher, did)["state"] == "delivered"
        reconciler = Reconciler(None, dispatcher.db, dispatcher.connectors,
                                clock=lambda: dt.datetime.now(dt.UTC))
        assert reconciler.sources() == []
        report = reconciler.run_once()
    finally:
        receiver.close()
        dispatcher.close()
    assert (report.checked, report.errors) == (0, [])
