"""Lifecycle webhooks on the embedded ledger, through the HTTP API and the delivery engine: each org gets the
events of its contracts it subscribed to, signed, once each, with stable ids — verified by the receiver
code printed in docs/integrators-guide.md; replaying the ledger's event stream from block 0 (a fresh
checkpoint, as after a lost database row or in a second hub process) sends nothing again; subscriptions are
per org and refuse bad input with stable codes."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.store.models import EventCheckpoint
from tests.helpers.api import auth, embedded_ledger, hub_client, hub_settings, ts
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
)
from tests.helpers.chaincode import signed_message as signed
from tests.helpers.webhooks import LOCAL_RECEIVERS, Receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRETS = {PROVIDER: "provider-hook-secret-0123456", CUSTOMER: "customer-hook-secret-6543210"}
CONTRACT = "ctr-life-001"
DEVICE = "dev-life-01"


def guide_receiver() -> dict[str, Any]:
    """The receiver code from docs/integrators-guide.md, executed as an integrator would paste it."""
    text = (ROOT / "docs" / "integrators-guide.md").read_text()
    block = re.search(r"<!-- receiver:start -->\s*```python\n(.*?)```\s*<!-- receiver:end -->", text, re.S)
    assert block, "the receiver example is missing from docs/integrators-guide.md"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "integrators-guide.md", "exec"), namespace)
    return namespace


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ledger = embedded_ledger(tmp_path / "ledger")
    with hub_client(hub_settings(tmp_path, **LOCAL_RECEIVERS), ledger, background=False, scheduler=False,
                    areas=("delivery",)) as c:
        yield c
    ledger.close()


def months_back(n: int) -> tuple[str, str]:
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    for _ in range(n):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return f"{first.year:04d}-{first.month:02d}", first.isoformat()


def submit(client: TestClient, fn: str, arg: dict[str, Any], org: str) -> None:
    client.app.state.services.ledger.submit(fn, [json.dumps(arg)], as_org=org)


def story(client: TestClient) -> tuple[str, str]:
    """Contract over two closed months: the first invoice posted and paid in two parts (settled), the second
    disputed and credited."""
    key = make_device_key("life")
    (p1, start), (p2, _) = months_back(2), months_back(1)
    asset = sample_asset(key, DEVICE)
    assert client.post("/v1/assets", json=asset, headers=auth("tok-provider")).status_code == 201
    contract = sample_contract(id=CONTRACT, assets=[DEVICE], start=start, minimum_commitment=None)
    assert client.post("/v1/contracts", json=contract, headers=auth("tok-provider")).status_code == 201
    assert client.post(f"/v1/contracts/{CONTRACT}/accept", headers=auth("tok-customer")).status_code == 200
    for n, period in enumerate((p1, p2)):
        message = signed(key, [reading(f"r-{n}", "scan", "3", ts(period, 10))], device_id=DEVICE,
                         message_id=f"m-{n}")
        assert client.post("/v1/usage", json=message, headers=auth("tok-device")).status_code == 202
    first = client.post(f"/v1/contracts/{CONTRACT}/periods/{p1}/close", headers=auth("tok-operator")).json()
    submit(client, "RecordErpPosting", {"invoice_id": first["id"], "target": "provider", "system": "sap-soap",
                                         "document_id": "5100000001", "delivery_id": "dlv-1"}, PROVIDER)
    half = (Decimal(first["total"]) / 2).quantize(Decimal("0.01"))
    for payment_id, amount in (("pay-1", half), ("pay-2", Decimal(first["total"]) - half)):
        payment = {"invoice_id": first["id"], "payment_id": payment_id, "amount": str(amount)}
        submit(client, "RecordPayment", payment, PROVIDER)
    second = client.post(f"/v1/contracts/{CONTRACT}/periods/{p2}/close", headers=auth("tok-operator")).json()
    r = client.post(f"/v1/invoices/{second['id']}/dispute", json={"reason": "scanner was down"},
                    headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/invoices/{second['id']}/credit-notes", json={"reason": "downtime"},
                    headers=auth("tok-provider"))
    assert r.status_code in (200, 201), r.text
    return first["id"], second["id"]


def pump(client: TestClient) -> int:
    queued = client.app.state.services.lifecycle.catch_up()
    client.app.state.services.delivery.run_until_idle()
    return queued


def test_each_org_gets_its_events_once_signed_and_deduplicable(client: TestClient) -> None:
    receivers = {PROVIDER: Receiver([503]), CUSTOMER: Receiver()}  # the provider's is down at first
    try:
        subscribed = client.post("/v1/webhooks", headers=auth("tok-provider"),
                                 json={"url": receivers[PROVIDER].url, "secret": SECRETS[PROVIDER]})
        assert subscribed.status_code == 201, subscribed.text
        assert subscribed.json()["events"][0] == "contract.activated" and subscribed.json()["secret_set"]
        r = client.post("/v1/webhooks", headers=auth("tok-customer"),
                        json={"url": receivers[CUSTOMER].url, "secret": SECRETS[CUSTOMER],
                              "events": ["invoice.issued", "invoice.disputed"]})
        assert r.status_code == 201, r.text
        first, second = story(client)
        assert pump(client) == 12  # 9 for the provider, 3 for the customer

        receiver = guide_receiver()
        got: dict[str, list[dict[str, Any]]] = {}
        for org, rec in receivers.items():
            seen: set[str] = set()
            events = []
            for headers, body, status in rec.requests:
                # a receiver that answered 503 had stored nothing: it verifies, but does not remember
                event = receiver["receive"](SECRETS[org], headers, body, seen if status == 200 else set())
                assert event is not None  # every request verifies; no event was delivered twice
                assert headers["X-LedgerHub-Event"] == event["type"]
                if status == 200:
                    events.append(event)
                    assert receiver["receive"](SECRETS[org], headers, body, seen) is None  # a repeat
                with pytest.raises(receiver["Refused"]):  # another org's secret does not verify
                    other = SECRETS[CUSTOMER if org == PROVIDER else PROVIDER]
                    receiver["receive"](other, headers, body, set())
            got[org] = events
        assert Counter(e["type"] for e in got[PROVIDER]) == Counter({
            "contract.activated": 1, "invoice.issued": 2, "invoice.posted": 1, "invoice.paid": 2,
            "invoice.settled": 1, "invoice.disputed": 1, "credit_note.issued": 1})
        assert sorted(e["type"] for e in got[CUSTOMER]) == ["invoice.disputed", "invoice.issued",
                                                             "invoice.issued"]
        assert len(receivers[PROVIDER].requests) == 10  # the 503 was retried with the same delivery id
        by_type = {e["type"]: e for e in got[PROVIDER]}
        assert by_type["invoice.settled"]["data"]["status"] == "SETTLED"
        paid = [e for e in got[PROVIDER] if e["type"] == "invoice.paid"]
        # deliveries are not ordered (retries, concurrent senders): the ledger's block orders them
        last_paid = max(paid, key=lambda e: e["block"])
        assert by_type["invoice.settled"]["tx_id"] == last_paid["tx_id"]  # the settling payment's transaction
        assert by_type["credit_note.issued"]["data"]["invoice_id"] == second
        assert {e["data"]["invoice_id"] for e in got[PROVIDER] if e["type"] == "invoice.posted"} == {first}
        # the same event has the same id at every party: one ledger transaction, one id
        customer_ids = {e["id"] for e in got[CUSTOMER]}
        assert customer_ids <= {e["id"] for e in got[PROVIDER]}

        # replay the whole stream from block 0: nothing is enqueued or sent again
        with client.app.state.services.db.begin() as session:
            session.delete(session.get(EventCheckpoint, "lifecycle-webhooks"))
        before = {org: len(rec.requests) for org, rec in receivers.items()}
        assert pump(client) == 0
        assert {org: len(rec.requests) for org, rec in receivers.items()} == before
    finally:
        for rec in receivers.values():
            rec.close()


def test_a_subscription_gets_only_later_events_and_is_per_org(client: TestClient) -> None:
    receiver = Receiver()
    try:
        story(client)
        r = client.post("/v1/webhooks", headers=auth("tok-provider"),
                        json={"url": receiver.url, "secret": SECRETS[PROVIDER]})
        assert r.status_code == 201
        sub_id = r.json()["id"]
        assert pump(client) == 0 and receiver.requests == []  # history is not replayed to a new subscriber
        assert client.get("/v1/webhooks", headers=auth("tok-customer")).json()["webhooks"] == []
        listed = client.get("/v1/webhooks", headers=auth("tok-operator")).json()["webhooks"]
        assert [w["id"] for w in listed] == [sub_id]
        assert "secret" not in json.dumps(client.get("/v1/webhooks", headers=auth("tok-provider")).json()
                                          ["webhooks"]).replace("secret_set", "")
        r = client.delete(f"/v1/webhooks/{sub_id}", headers=auth("tok-customer"))  # another org's
        assert r.status_code == 404 and r.json()["code"] == "unknown_webhook"
        assert client.delete(f"/v1/webhooks/{sub_id}", headers=auth("tok-provider")).status_code == 204
        assert client.get("/v1/webhooks", headers=auth("tok-provider")).json()["webhooks"] == []
    finally:
        receiver.close()


@pytest.mark.parametrize(("token", "body", "status", "code"), [
    ("tok-auditor", {"url": "https://example.com/h", "secret": "x" * 16}, 403, "forbidden"),
    ("tok-device", {"url": "https://example.com/h", "secret": "x" * 16}, 403, "forbidden"),
    ("tok-provider", {"url": "https://example.com/h", "secret": "x" * 16, "events": ["invoice.eaten"]}, 422,
     "unknown_event_type"),
    ("tok-provider", {"url": "https://example.com/h", "secret": "x" * 16, "events": []}, 422,
     "unknown_event_type"),
    ("tok-provider", {"url": "https://example.com/h", "secret": "short"}, 422, "invalid_request"),
    ("tok-provider", {"url": "https://example.com/h", "secret": "x" * 16, "extra": 1}, 422,
     "invalid_request"),
    ("tok-provider", {"url": "ftp://example.com/h", "secret": "x" * 16}, 422, "invalid_request"),
])
def test_bad_subscriptions_are_refused_and_write_nothing(client: TestClient, token: str, body: dict[str, Any],
                                                         status: int, code: str) -> None:
    r = client.post("/v1/webhooks", headers=auth(token), json=body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert client.get("/v1/webhooks", headers=auth("tok-provider")).json()["webhooks"] == []


def test_private_url_refused_without_the_operator_allowing_it(tmp_path: Path) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        with hub_client(hub_settings(tmp_path), ledger, background=False) as c:
            r = c.post("/v1/webhooks", headers=auth("tok-provider"),
                       json={"url": "http://127.0.0.1:9/h", "secret": "x" * 16})
            assert (r.status_code, r.json()["code"]) == (400, "webhook_url_forbidden")
            assert c.get("/v1/webhooks", headers=auth("tok-provider")).json()["webhooks"] == []
    finally:
        ledger.close()


def test_at_most_ten_per_org(client: TestClient) -> None:
    for i in range(10):
        r = client.post("/v1/webhooks", headers=auth("tok-provider"),
                        json={"url": f"https://example.com/h{i}", "secret": "x" * 16})
        assert r.status_code == 201
    r = client.post("/v1/webhooks", headers=auth("tok-provider"),
                    json={"url": "https://example.com/h10", "secret": "x" * 16})
    assert (r.status_code, r.json()["code"]) == (409, "too_many_webhooks")
    assert len(client.get("/v1/webhooks", headers=auth("tok-provider")).json()["webhooks"]) == 10
    assert client.post("/v1/webhooks", headers=auth("tok-customer"),
                       json={"url": "https://example.com/c", "secret": "x" * 16}).status_code == 201


def test_an_accepted_amendment_reaches_both_parties_as_contract_amended_once(client: TestClient) -> None:
    """A real amendment through the API (ADR 0046): the provider proposes a new price from next month, the
    customer accepts; the `ContractAmended` event of that acceptance becomes one `contract.amended` for each
    subscribed party, with the ledger's tx id, and a rejected amendment sends nothing."""
    receivers = {PROVIDER: Receiver(), CUSTOMER: Receiver()}
    try:
        for org, token in ((PROVIDER, "tok-provider"), (CUSTOMER, "tok-customer")):
            r = client.post("/v1/webhooks", headers=auth(token),
                            json={"url": receivers[org].url, "secret": SECRETS[org],
                                  "events": ["contract.amended"]})
            assert r.status_code == 201, r.text
        story(client)
        today = dt.datetime.now(dt.UTC).date()
        next_month = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        amendments = f"/v1/contracts/{CONTRACT}/amendments"
        plan = {"charges": [{"id": "platform", "model": "flat", "amount": "600.00"}]}
        for aid in ("am-dropped", "am-price"):  # rejected first: an accepted one would block the instant
            r = client.post(amendments, headers=auth("tok-provider"),
                            json={"id": aid, "effective_from": f"{next_month.isoformat()}T00:00:00Z",
                                  "plan": plan})
            assert r.status_code == 201, r.text
            verdict = "accept" if aid == "am-price" else "reject"
            r = client.post(f"{amendments}/{aid}/{verdict}", headers=auth("tok-customer"))
            assert r.status_code == 200, r.text
            if verdict == "accept":
                accepted_tx = r.json()["amendment"]["answered_tx"]
        assert pump(client) == 2  # one per subscribed party, for the accepted amendment only
        receiver = guide_receiver()
        for org, rec in receivers.items():
            ((headers, body, status),) = rec.requests
            assert status == 200
            event = receiver["receive"](SECRETS[org], headers, body, set())
            assert event["type"] == "contract.amended" and event["contract_id"] == CONTRACT
            assert event["data"]["amendment_id"] == "am-price" and event["tx_id"] == accepted_tx
        assert pump(client) == 0  # caught up: nothing again
    finally:
        for rec in receivers.values():
            rec.close()
