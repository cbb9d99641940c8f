"""Alert webhooks cannot be pointed at the hub's own network (SSRF): refused when registered, refused again
when sent (against what the name resolves to then), never contacted when refused, and the receiver's answer
body never comes back to the tenant through /v1/deliveries."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.base import RetryableError
from hub.delivery.webhooks import send
from tests.helpers.api import auth, embedded_ledger, hub_client, hub_settings, setup_contract
from tests.helpers.chaincode import make_device_key
from tests.helpers.portal import send as send_usage
from tests.integration.test_alert_webhooks import CONTRACT, LOCAL_RECEIVERS, SECRET, Receiver, deliveries

pytestmark = pytest.mark.integration
PUBLIC = "93.184.215.14"
INTERNAL_PAGE = b"<html><h1>Internal admin</h1><p>db password: hunter2-internal</p></html>"
FORBIDDEN_AT_REGISTRATION = [
    "http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://localhost/hook", "https://[::1]/hook",
    "https://10.1.2.3/hook", "https://172.16.0.10/hook", "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data/", "https://[fd00::1]/hook", "https://[::ffff:127.0.0.1]/hook",
    "https://0.0.0.0/hook", "https://2130706433/hook", "https://0x7f000001/hook",
    f"http://{PUBLIC}/hook",  # public, but plain http is not allowed by default
]


def make_client(tmp_path: Path, **settings: object) -> Iterator[TestClient]:
    ledger = embedded_ledger(tmp_path / "ledger")
    with hub_client(hub_settings(tmp_path, **settings), ledger, scheduler=False, areas=("delivery",)) as c:
        key = make_device_key()
        setup_contract(c, key, minimum_commitment=None)
        send_usage(c, key, "m1", "30")
        yield c
    ledger.close()


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[TestClient]:
    """The defaults: https to public addresses only."""
    yield from make_client(tmp_path)


@pytest.fixture
def http_only(tmp_path: Path) -> Iterator[TestClient]:
    """Plain http allowed (so a local receiver could be reached), private addresses still not."""
    yield from make_client(tmp_path, webhook_allow_http=True)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path, **LOCAL_RECEIVERS)


def put_rule(client: TestClient, *urls: str, budget: str = "0.01"):
    return client.put(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer"),
                      json={"budget": budget, "webhooks": [{"url": u, "secret": SECRET} for u in urls]})


def write_rule_directly(client: TestClient, *urls: str) -> None:
    """A rule stored without the API's check (written before this policy, or by another path)."""
    client.get(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer"))  # creates the service
    service = client.app.state.services.alerts
    service.set_rule(CONTRACT, "CustomerMSP", budget="0.01", usual_level=None,
                     webhooks=[{"url": u, "secret": SECRET} for u in urls])
    service.evaluate_all()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registration_refuses_private_loopback_metadata_and_http_urls(strict: TestClient) -> None:
    assert put_rule(strict, "https://hooks.example.com/ok", budget="100000000").status_code == 200
    for url in FORBIDDEN_AT_REGISTRATION:
        r = put_rule(strict, url, budget="0.01")
        assert r.status_code == 400, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "webhook_url_forbidden", url
    rule = strict.get(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer")).json()
    # nothing changed: the earlier rule stands, no alert was raised at the refused budget
    assert rule["budget"] == "100000000" and [h["url"] for h in rule["webhooks"]] == ["https://hooks.example.com/ok"]
    assert strict.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"] == []


def test_send_refuses_loopback_and_never_connects(http_only: TestClient) -> None:
    """`localhost` stored without the API's check: refused at send time, before any connection, with the
    same answer for an open port and a closed one (no port map for the tenant)."""
    receiver = Receiver([])
    try:
        port = receiver.server.server_address[1]
        write_rule_directly(http_only, f"http://localhost:{port}/hook", f"http://localhost:{closed_port()}/hook")
        http_only.app.state.services.delivery.run_until_idle()
        rows = deliveries(http_only)
        assert len(rows) == 4 and all(r["state"] == "dead_letter" and r["attempts"] == 1 for r in rows)
        assert {(r["last_error"]["code"], r["last_error"]["message"]) for r in rows} == {
            ("webhook_url_forbidden", "webhook URL refused: loopback host name")}
        assert receiver.requests == []
    finally:
        receiver.close()


def test_send_rechecks_what_the_name_resolves_to_now(strict: TestClient) -> None:
    """Registered while its name resolved to a public address; by send time it resolves to a private one
    (a DNS change, or rebinding): refused, nothing sent."""
    answers = {"hooks.example.com": [PUBLIC]}
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    services = strict.app.state.services
    services.resolver = resolve
    services.delivery.dispatcher.resolver = resolve
    assert put_rule(strict, "https://hooks.example.com/hook").status_code == 200
    assert calls == ["hooks.example.com"]
    answers["hooks.example.com"] = ["10.0.0.7"]
    services.delivery.run_until_idle()
    rows = deliveries(strict)
    assert rows and all(r["state"] == "dead_letter" for r in rows)
    assert {r["last_error"]["code"] for r in rows} == {"webhook_url_forbidden"}
    assert {r["last_error"]["message"] for r in rows} == {
        "webhook URL refused: the host resolves to a private address"}


def test_send_connects_to_the_address_it_checked(local: TestClient) -> None:
    """The name is resolved once per send, by the policy's resolver, and that address is the one connected
    to (the system resolver does not know `hooks.test`); the Host header keeps the name."""
    receiver = Receiver([])
    try:
        port = receiver.server.server_address[1]
        calls: list[str] = []

        def resolve(host: str, _port: int) -> list[str]:
            calls.append(host)
            return ["127.0.0.1"]

        services = local.app.state.services
        services.resolver = resolve
        services.delivery.dispatcher.resolver = resolve
        assert put_rule(local, f"http://hooks.test:{port}/hook").status_code == 200
        services.delivery.run_until_idle()
        rows = deliveries(local)
        assert rows and all(r["state"] == "delivered" for r in rows)
        assert len(receiver.requests) == len(rows) == len(calls)
        assert {h["Host"] for h, _, _ in receiver.requests} == {f"hooks.test:{port}"}
    finally:
        receiver.close()


def test_receiver_body_is_never_shown_to_the_tenant(local: TestClient) -> None:
    receiver = Receiver([400, 400], body=INTERNAL_PAGE)
    try:
        assert put_rule(local, receiver.url).status_code == 200
        local.app.state.services.delivery.run_until_idle()
        listed = local.get("/v1/deliveries", headers=auth("tok-customer"))
        assert listed.status_code == 200
        rows = [d for d in listed.json()["items"] if d["connector"] == "webhook"]
        assert rows and all(r["state"] == "dead_letter" for r in rows)
        shown = [listed.text] + [local.get(f"/v1/deliveries/{r['id']}", headers=auth("tok-customer")).text
                                 for r in rows]
        for text in shown:
            assert "hunter2" not in text and "Internal admin" not in text
        assert {r["last_error"]["message"] for r in rows} == {
            "webhook receiver refused: HTTP 400 Bad Request"}
        assert all(r["erp_messages"] == [] for r in rows)
    finally:
        receiver.close()


def test_refused_and_timed_out_look_the_same(tmp_path: Path) -> None:
    """For a receiver the policy allows, a closed port and one that never answers give one message."""
    from hub.delivery.egress import EgressPolicy
    from hub.delivery.webhooks import NO_ANSWER

    policy = EgressPolicy(allow_private=True, allow_http=True)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection (the kernel does), never answers
    try:
        errors = []
        for port in (closed_port(), silent.getsockname()[1]):
            with pytest.raises(RetryableError) as caught:
                send(f"http://127.0.0.1:{port}/hook", SECRET, b"{}", "d-1", timeout=0.3, policy=policy)
            errors.append((type(caught.value), caught.value.code, str(caught.value)))
        assert errors[0] == errors[1] == (RetryableError, "erp_unavailable", NO_ANSWER)
    finally:
        silent.close()
