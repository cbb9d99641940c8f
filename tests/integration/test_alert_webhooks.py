"""Alert webhooks go through the ERP delivery engine: signed (HMAC-SHA256 over timestamp and body), retried
when the receiver fails, dead-lettered when it refuses, delivered once per alert and URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.portal.alerts import verify_webhook
from tests.helpers.api import auth, embedded_ledger, hub_client, hub_settings, setup_contract
from tests.helpers.chaincode import make_device_key
from tests.helpers.portal import send
from tests.helpers.webhooks import LOCAL_RECEIVERS, Receiver

pytestmark = pytest.mark.integration
SECRET = "receiver-shared-secret-0123"
CONTRACT = "ctr-mri-001"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ledger = embedded_ledger(tmp_path / "ledger")
    with hub_client(hub_settings(tmp_path, **LOCAL_RECEIVERS), ledger, scheduler=False,
                    areas=("delivery",)) as c:
        yield c
    ledger.close()


def raise_budget_alerts(client: TestClient, url: str) -> None:
    key = make_device_key()
    setup_contract(client, key, minimum_commitment=None)
    send(client, key, "m1", "30")
    forecast = Decimal(
        client.get(f"/v1/contracts/{CONTRACT}/usage", headers=auth("tok-customer")).json()["forecast"][
            "total"
        ]
    )
    r = client.put(
        f"/v1/contracts/{CONTRACT}/alert-rules",
        headers=auth("tok-customer"),
        json={"budget": str(forecast - 1), "webhooks": [{"url": url, "secret": SECRET}]},
    )
    assert r.status_code == 200, r.text


def deliveries(client: TestClient) -> list[dict]:
    return [d for d in client.app.state.services.delivery.list() if d["connector"] == "webhook"]


def test_signed_webhook_delivered_once_per_alert_after_failures(client: TestClient) -> None:
    receiver = Receiver([503, 500])  # the receiver is down for the first two tries
    try:
        raise_budget_alerts(client, receiver.url)
        engine = client.app.state.services.delivery
        engine.run_until_idle()
        rows = deliveries(client)
        assert sorted(r["invoice_id"].rsplit("-", 1)[-1] for r in rows) == ["budget_100", "budget_80"]
        assert all(r["state"] == "delivered" for r in rows)
        accepted = [(h, b) for h, b, status in receiver.requests if status == 200]
        assert len(accepted) == 2 and len(receiver.requests) == 4  # two failures were retried
        for headers, body in accepted:
            assert verify_webhook(SECRET, body, headers)
            assert json.loads(body)["alert"]["contract_id"] == CONTRACT
        # the same delivery id on every try of one alert: receivers deduplicate on it
        ids = [h["X-LedgerHub-Delivery"] for h, _, _ in receiver.requests]
        assert len(set(ids)) == 2
        # evaluating again raises nothing new and sends nothing new
        client.app.state.services.alerts.evaluate_all()
        engine.run_until_idle()
        assert len(receiver.requests) == 4
    finally:
        receiver.close()


def test_refusing_receiver_lands_in_dead_letters_for_an_operator(client: TestClient) -> None:
    receiver = Receiver([400, 400])
    try:
        raise_budget_alerts(client, receiver.url)
        client.app.state.services.delivery.run_until_idle()
        rows = deliveries(client)
        assert rows and all(r["state"] == "dead_letter" for r in rows)
        assert len(receiver.requests) == len(rows)  # a refusal is not retried by itself
        # the customer registered the webhook: its delivery is the customer's, retried by its operator
        assert rows[0]["org"] == "CustomerMSP"
        r = client.post(f"/v1/deliveries/{rows[0]['id']}/retry", headers=auth("tok-customer-operator"))
        assert r.status_code == 202, r.text
        client.app.state.services.delivery.run_until_idle()
        assert {d["id"]: d["state"] for d in deliveries(client)}[rows[0]["id"]] == "delivered"
    finally:
        receiver.close()


def test_unusable_webhook_url_is_dead_lettered_at_once(client: TestClient) -> None:
    """A URL no retry can fix (the API refuses it; a rule written another way might not) goes to the dead
    letters after one attempt instead of using up the retry budget: the egress policy refuses the scheme
    before anything is sent."""
    key = make_device_key()
    setup_contract(client, key, minimum_commitment=None)
    send(client, key, "m1", "30")
    client.get(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer"))  # creates the service
    services = client.app.state.services
    service = services.alerts
    service.set_rule(
        CONTRACT,
        "CustomerMSP",
        budget="0.01",
        usual_level=None,
        webhooks=[{"url": "ftp://receiver.example/hooks", "secret": SECRET}],
    )
    service.evaluate_all()
    services.delivery.run_until_idle()
    rows = [d for d in deliveries(client) if d["state"] == "dead_letter"]
    assert rows and all(
        r["attempts"] == 1 and r["last_error"]["code"] == "webhook_url_forbidden" for r in rows
    )
