"""GET /v1/deliveries and POST /v1/deliveries/{id}/retry through the real hub app (create_app) with the
delivery engine installed, the embedded ledger, and the SAP emulator: shapes, visibility per role, retry of
dead letters only, and problem+json codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.emulators.sap_soap import SapSoapEmulator
from hub.delivery.service import install
from tests.helpers.api import (
    CUSTOMER,
    PROVIDER,
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
)
from tests.helpers.delivery import FAST, PARTIES, issue_invoices, sap_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path, database_url: str):
    inner = embedded_ledger(tmp_path / "ledger")
    ledger = ControlledLedger(inner)
    with SapSoapEmulator() as emulator:
        [accepted, rejected] = issue_invoices(ledger, 2)
        settings = hub_settings(tmp_path, database_url, connectors={"sap-soap": sap_settings(emulator)},
                                parties=PARTIES)

        def configure(services):
            install(services, start=False, options=FAST)

        with hub_client(settings, ledger, background=False, configure=configure) as client:
            engine = client.app.state.services.delivery
            engine.consume_events()
            emulator.faults.queue("reject")  # the first SOAP request (one of the four) is rejected
            engine.run_until_idle()
            yield client, engine, emulator, (accepted, rejected)
            engine.stop()
    inner.close()


def test_operator_and_parties_see_only_their_own_orgs_deliveries(world) -> None:
    client, engine, _, (first, _) = world
    everything = engine.list()
    assert len(everything) == 4
    assert {d["state"] for d in everything} == {"delivered", "dead_letter"}
    for role in ("provider", "operator"):
        seen = client.get("/v1/deliveries", headers=auth(f"tok-{role}")).json()["items"]
        assert {d["org"] for d in seen} == {PROVIDER} and len(seen) == 2, role
    for token in ("tok-customer", "tok-customer-operator"):
        seen = client.get("/v1/deliveries", headers=auth(token)).json()["items"]
        assert {d["org"] for d in seen} == {CUSTOMER} and len(seen) == 2, token
    assert client.get("/v1/deliveries", headers=auth("tok-other-operator")).json()["items"] == []
    filtered = client.get(f"/v1/deliveries?invoice={first}", headers=auth("tok-operator")).json()["items"]
    assert [(d["invoice_id"], d["target"]) for d in filtered] == [(first, "provider")]
    assert len(client.get("/v1/deliveries?limit=1", headers=auth("tok-operator")).json()["items"]) == 1
    bad = client.get("/v1/deliveries?limit=0", headers=auth("tok-operator"))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    other = client.get("/v1/deliveries", headers=auth("tok-other-provider")).json()["items"]
    assert other == []
    delivered = next(d for d in everything if d["state"] == "delivered")
    assert delivered["erp_ref"]["system"] == "sap-soap" and delivered["erp_ref"]["document_id"]
    assert delivered["message_uuid"] and delivered["ledger_tx_id"]


def test_roles_without_access_are_refused(world) -> None:
    client, _, _, _ = world
    for token, status, code in (("tok-auditor", 403, "forbidden"), ("tok-device", 403, "forbidden"),
                                ("nope", 401, "invalid_token")):
        response = client.get("/v1/deliveries", headers=auth(token))
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code
    assert client.get("/v1/deliveries").json()["code"] == "unauthenticated"


def operators(org: str) -> tuple[str, str]:
    """(this org's operator token, the other party's operator token)."""
    mine, theirs = "tok-operator", "tok-customer-operator"
    return (mine, theirs) if org == PROVIDER else (theirs, mine)


def test_single_delivery_with_history_and_visibility(world) -> None:
    client, engine, _, _ = world
    dead = next(d for d in engine.list() if d["state"] == "dead_letter")
    own_operator, other_operator = operators(dead["org"])
    found = client.get(f"/v1/deliveries/{dead['id']}", headers=auth(own_operator)).json()
    assert found["history"][0]["outcome"] == "erp_rejected"
    owner = "tok-provider" if dead["org"] == PROVIDER else "tok-customer"
    stranger = "tok-customer" if dead["org"] == PROVIDER else "tok-provider"
    assert client.get(f"/v1/deliveries/{dead['id']}", headers=auth(owner)).status_code == 200
    unknown = client.get("/v1/deliveries/dlv-nothing", headers=auth(owner)).json()
    for token in (stranger, other_operator, "tok-other-operator"):
        response = client.get(f"/v1/deliveries/{dead['id']}", headers=auth(token))
        assert response.status_code == 404 and response.json()["code"] == "delivery_not_found"
        # nothing but the id in the path tells it from an unknown delivery
        assert response.json()["title"] == unknown["title"] and "erp_messages" not in response.text


def test_operator_retries_a_dead_letter_and_it_is_delivered(world) -> None:
    client, engine, emulator, _ = world
    items = engine.list()
    dead = next(d for d in items if d["state"] == "dead_letter")
    done = next(d for d in items if d["state"] == "delivered" and d["org"] == dead["org"])
    assert dead["last_error"]["code"] == "erp_rejected" and dead["erp_messages"]
    operator, other_operator = operators(dead["org"])

    refused = client.post(f"/v1/deliveries/{dead['id']}/retry", headers=auth("tok-provider"))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    for token in (other_operator, "tok-other-operator"):  # another org's operator: as if unknown
        hidden = client.post(f"/v1/deliveries/{dead['id']}/retry", headers=auth(token))
        assert hidden.status_code == 404 and hidden.json()["code"] == "delivery_not_found"
    assert engine.get(dead["id"])["state"] == "dead_letter"
    missing = client.post("/v1/deliveries/dlv-nothing/retry", headers=auth(operator))
    assert missing.status_code == 404 and missing.json()["code"] == "delivery_not_found"
    conflict = client.post(f"/v1/deliveries/{done['id']}/retry", headers=auth(operator))
    assert conflict.status_code == 409 and conflict.json()["code"] == "delivery_not_dead_lettered"
    assert conflict.json()["state"] == "delivered"

    retried = client.post(f"/v1/deliveries/{dead['id']}/retry", headers=auth(operator))
    assert retried.status_code == 202
    assert retried.json()["state"] == "pending" and retried.json()["message_uuid"] == dead["message_uuid"]
    again = client.post(f"/v1/deliveries/{dead['id']}/retry", headers=auth(operator))
    assert again.status_code == 409
    engine.run_until_idle()
    after = client.get(f"/v1/deliveries/{dead['id']}", headers=auth(operator)).json()
    assert after["state"] == "delivered"
    assert len(emulator.postings()) == 4
    invoice = client.get(f"/v1/invoices/{dead['invoice_id']}", headers=auth("tok-provider")).json()
    assert {r["target"] for r in invoice["erp_refs"]} == {"provider", "customer"}


def test_deliveries_answer_503_when_the_engine_is_not_installed(tmp_path: Path) -> None:
    inner = embedded_ledger(tmp_path / "ledger")
    try:
        with hub_client(hub_settings(tmp_path), ControlledLedger(inner), background=False) as client:
            response = client.get("/v1/deliveries", headers=auth("tok-operator"))
            assert response.status_code == 503 and response.json()["code"] == "delivery_not_configured"
    finally:
        inner.close()


def test_metrics_show_deliveries_by_state_and_erp_latency(world) -> None:
    client, _, _, _ = world
    text = client.get("/metrics").text
    assert 'ledgerhub_deliveries{state="delivered"} 3.0' in text
    assert 'ledgerhub_deliveries{state="dead_letter"} 1.0' in text
    assert 'ledgerhub_erp_call_seconds_count{action="deliver",connector="sap-soap",outcome="ok"} 3.0' in text
    assert 'outcome="erp_rejected"' in text


def test_reconciliation_is_registered_as_a_scheduler_job(world) -> None:
    from hub.scheduler import registered_jobs

    assert "delivery-reconcile" in {job.id for job in registered_jobs()}
