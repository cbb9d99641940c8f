"""The hub API end to end on the embedded ledger running the real contract: every endpoint's happy path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from tests.helpers.api import (
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import make_device_key, reading

pytestmark = pytest.mark.integration
CID = "ctr-mri-001"


def test_assets_register_and_read(client, device_key):
    body = {"id": "mri-1", "description": "MRI", "public_key": device_key.public_pem}
    r = client.post("/v1/assets", json=body, headers=auth("tok-provider"))
    assert r.status_code == 201, r.text
    assert r.json()["provider"] == "ProviderMSP"
    assert r.json()["public_key"] == device_key.public_pem
    r = client.get("/v1/assets/mri-1", headers=auth("tok-provider"))
    assert r.status_code == 200 and r.json()["id"] == "mri-1"
    assert client.get("/v1/assets/mri-1", headers=auth("tok-auditor")).status_code == 200
    # another provider org cannot see it, nor can an unknown id be told apart
    other = client.get("/v1/assets/mri-1", headers=auth("tok-other-provider"))
    unknown = client.get("/v1/assets/nope", headers=auth("tok-provider"))
    assert other.status_code == unknown.status_code == 404
    assert other.json()["code"] == unknown.json()["code"] == "unknown_asset"


def test_bad_public_key_is_refused_with_chaincode_code(client):
    body = {
        "id": "mri-2",
        "description": "x",
        "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    }
    r = client.post("/v1/assets", json=body, headers=auth("tok-provider"))
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "bad_public_key"


def test_contract_lifecycle_and_listing(client, device_key):
    contract = setup_contract(client, device_key)
    assert contract["status"] == "ACTIVE"
    r = client.get(f"/v1/contracts/{CID}", headers=auth("tok-customer"))
    assert r.status_code == 200 and r.json()["status"] == "ACTIVE"
    listed = client.get("/v1/contracts", headers=auth("tok-provider")).json()["items"]
    assert [c["id"] for c in listed] == [CID]
    assert client.get("/v1/contracts", headers=auth("tok-other-provider")).json()["items"] == []
    # proposing the same id again is the chaincode's conflict
    again = client.post("/v1/contracts", json={**contract, "status": None}, headers=auth("tok-provider"))
    assert again.status_code == 409 and again.json()["code"] == "contract_exists"


def test_invalid_plan_is_the_chaincode_refusal(client, device_key):
    _period, start = last_month()
    client.post(
        "/v1/assets",
        json={"id": "mri-berlin-01", "description": "", "public_key": device_key.public_pem},
        headers=auth("tok-provider"),
    )
    from tests.helpers.chaincode import sample_contract

    bad = sample_contract(
        start=start, charges=[{"id": "x", "model": "graduated", "metric": "scan", "tiers": []}]
    )
    r = client.post("/v1/contracts", json=bad, headers=auth("tok-provider"))
    assert r.status_code == 400 and r.json()["code"] == "invalid_plan"


def test_usage_close_invoice_ubl_dispute_credit(client, ledger, active, device_key):
    period, _ = last_month()
    m = usage(
        device_key,
        "m-1",
        [
            reading("r-1", timestamp=ts(period, 3)),
            reading("r-2", "magnet_hours", "0.75", ts(period, 3, 11)),
            reading("r-3", timestamp=ts(period, 4)),
        ],
    )
    r = post_usage(client, m)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["duplicates"] == []
    assert ledger.tx(body["tx_id"]).block == body["block"]

    to_date = client.get(
        f"/v1/contracts/{CID}/usage", params={"period": period}, headers=auth("tok-customer")
    )
    assert to_date.status_code == 200, to_date.text
    cost = to_date.json()["cost"]
    # 500 flat + 2 scans x 85 + 0.75 h x 12.50 = 679.38 -> minimum commitment 2000; tax 19 %
    assert cost["subtotal"] == "2000.00" and cost["total"] == "2380.00"
    assert to_date.json()["forecast"] is None  # last month is not running any more

    closed = client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    invoice = closed.json()
    assert invoice["id"] == f"inv-{CID}-{period}" and invoice["status"] == "ISSUED"
    assert invoice["total"] == "2380.00" and invoice["readings"] == 3
    assert ledger.tx(invoice["tx_id"]).block == invoice["block"]
    closes = ledger.submits["CloseBillingPeriod"]
    again = client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator"))
    assert again.status_code == 200 and again.json()["id"] == invoice["id"]
    assert again.json()["tx_id"] == invoice["tx_id"]
    assert ledger.submits["CloseBillingPeriod"] == closes + 1  # a no-op transaction, same invoice

    for token in ("tok-provider", "tok-customer", "tok-auditor"):
        items = client.get("/v1/invoices", headers=auth(token)).json()["items"]
        assert [i["id"] for i in items] == [invoice["id"]], token
    assert (
        client.get("/v1/invoices", params={"status": "PAID"}, headers=auth("tok-auditor")).json()["items"]
        == []
    )
    assert (
        len(
            client.get(
                "/v1/invoices", params={"contract": CID, "status": "ISSUED"}, headers=auth("tok-customer")
            ).json()["items"]
        )
        == 1
    )
    assert (
        client.get("/v1/invoices", params={"contract": "other"}, headers=auth("tok-customer")).json()["items"]
        == []
    )

    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth("tok-customer")).json()
    assert got["lines"] == invoice["lines"] and got["history"][0]["status"] == "ISSUED"
    assert sum(Decimal(line["amount"]) for line in got["lines"]) == Decimal(got["subtotal"])

    ubl = client.get(f"/v1/invoices/{invoice['id']}/ubl", headers=auth("tok-provider"))
    assert ubl.status_code == 200 and ubl.headers["content-type"].startswith("application/xml")
    root = etree.fromstring(ubl.content)
    ns = {
        "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
        "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    }
    assert root.findtext("cbc:ID", namespaces=ns) == invoice["id"]
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=ns) == "2380.00"

    disputed = client.post(
        f"/v1/invoices/{invoice['id']}/dispute", json={"reason": "scan count"}, headers=auth("tok-customer")
    )
    assert disputed.status_code == 200 and disputed.json()["status"] == "DISPUTED"
    listed = client.get("/v1/invoices", params={"status": "DISPUTED"}, headers=auth("tok-provider")).json()
    assert [i["id"] for i in listed["items"]] == [invoice["id"]]

    note = client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "agreed", "amount": "100.00"},
        headers=auth("tok-provider"),
    )
    assert note.status_code == 201, note.text
    assert note.json()["id"].startswith(f"cn-{invoice['id']}-")
    assert (
        client.get(f"/v1/invoices/{invoice['id']}", headers=auth("tok-auditor")).json()["status"]
        == "CREDITED"
    )
    ids = {
        i["id"]
        for i in client.get("/v1/invoices", params={"contract": CID}, headers=auth("tok-customer")).json()[
            "items"
        ]
    }
    assert ids == {invoice["id"], note.json()["id"]}

    # a second dispute is an invalid state transition on the ledger
    twice = client.post(
        f"/v1/invoices/{invoice['id']}/dispute", json={"reason": "again"}, headers=auth("tok-customer")
    )
    assert twice.status_code == 409 and twice.json()["code"] == "invalid_state_transition"


def test_period_not_ended_and_closed_period(client, active, device_key):
    period, _ = last_month()
    from hub.scheduler import next_month

    y, m = int(period[:4]), int(period[5:])
    y, m = next_month(y, m)
    running = f"{y:04d}-{m:02d}"
    r = client.post(f"/v1/contracts/{CID}/periods/{running}/close", headers=auth("tok-operator"))
    assert r.status_code == 409 and r.json()["code"] == "period_not_ended"
    assert (
        client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator")).status_code
        == 200
    )
    late = post_usage(client, usage(device_key, "late", [reading("late-1", timestamp=ts(period, 20))]))
    assert late.status_code == 409 and late.json()["code"] == "period_closed"
    assert late.json()["reading_ids"] == ["late-1"]
    bad = client.post(f"/v1/contracts/{CID}/periods/2026-13/close", headers=auth("tok-operator"))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_usage_to_date_has_a_forecast_for_the_running_month(client, active, device_key):
    r = client.get(f"/v1/contracts/{CID}/usage", headers=auth("tok-provider"))
    assert r.status_code == 200
    body = r.json()
    forecast = body["forecast"]
    assert forecast is not None and forecast["method"] == "linear_run_rate"
    # nothing used yet: the forecast is the minimum commitment plus tax
    assert forecast["subtotal"] == "2000.00" and forecast["total"] == "2380.00"


def test_health_ready_metrics_openapi(client, active, device_key):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"]["ok"] is True
    period, _ = last_month()
    post_usage(client, usage(device_key, "m-metrics", [reading("rm-1", timestamp=ts(period, 5))]))
    forged = usage(device_key, "m-forged", [reading("rm-2", timestamp=ts(period, 5))])
    forged["readings"][0]["quantity"] = "5"
    post_usage(client, forged)
    text = client.get("/metrics").text
    assert "ledgerhub_readings_accepted_total 1.0" in text
    assert 'ledgerhub_readings_rejected_total{code="bad_signature"} 1.0' in text
    assert "ledgerhub_usage_batch_messages_count 1.0" in text
    assert 'ledgerhub_ledger_call_seconds_count{fn="RecordUsage",kind="submit"} 1.0' in text
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/assets",
        "/v1/contracts",
        "/v1/contracts/{contract_id}/accept",
        "/v1/usage",
        "/v1/contracts/{contract_id}/usage",
        "/v1/contracts/{contract_id}/periods/{period}/close",
        "/v1/invoices",
        "/v1/invoices/{invoice_id}",
        "/v1/invoices/{invoice_id}/proof",
        "/v1/invoices/{invoice_id}/ubl",
        "/v1/invoices/{invoice_id}/dispute",
        "/v1/invoices/{invoice_id}/credit-notes",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    problem_404 = paths["/v1/invoices/{invoice_id}"]["get"]["responses"]["404"]["content"]
    assert "application/problem+json" in problem_404
    assert "Problem" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_readyz_reports_an_unreachable_ledger(tmp_path):
    class Down(ControlledLedger):
        def height(self) -> int:
            from hub.ledger.base import LedgerUnavailable

            raise LedgerUnavailable("peer down")

    inner = embedded_ledger(tmp_path / "l")
    try:
        with hub_client(hub_settings(tmp_path), Down(inner), background=False) as c:
            r = c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["ledger"] == {"ok": False, "error": "LedgerUnavailable"}
    finally:
        inner.close()


def test_proof_endpoint_uses_the_audit_hook_after_visibility(client, active, device_key):
    period, _ = last_month()
    post_usage(client, usage(device_key, "m-p", [reading("rp-1", timestamp=ts(period, 6))]))
    invoice = client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator")).json()
    calls = []

    def builder(services, invoice_id, principal):
        calls.append((invoice_id, principal.org))
        return {"invoice_id": invoice_id, "network": services.ledger.network_id}

    client.app.state.services.proof_builder = builder
    r = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor"))
    assert r.status_code == 200 and r.json()["invoice_id"] == invoice["id"]
    hidden = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-other-customer"))
    assert hidden.status_code == 404 and hidden.json()["code"] == "unknown_invoice"
    assert calls == [(invoice["id"], "AuditorMSP")]


def test_flow_on_each_database(tmp_path, database_url):
    """The same story on SQLite and on PostgreSQL (read models, idempotency records, checkpoints)."""
    inner = embedded_ledger(tmp_path / "ledger")
    key = make_device_key("db")
    try:
        with hub_client(hub_settings(tmp_path, database_url), ControlledLedger(inner)) as c:
            setup_contract(c, key)
            period, _ = last_month()
            m = usage(key, "m-db", [reading("rdb-1", timestamp=ts(period, 2))])
            first = post_usage(c, m)
            assert first.status_code == 202
            assert post_usage(c, m).json() == first.json()
            assert (
                c.post(
                    f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator")
                ).status_code
                == 200
            )
            items = c.get("/v1/invoices", headers=auth("tok-customer")).json()["items"]
            assert [i["total"] for i in items] == ["2380.00"]
            assert c.get("/readyz").status_code == 200
    finally:
        inner.close()


def test_chaincode_refusals_reach_the_caller_with_their_codes_and_change_nothing(client, ledger, device_key):
    """Refusals only the contract can make (it holds the state they depend on), seen through HTTP."""
    from tests.helpers.chaincode import sample_contract

    _period, start = last_month()
    contract = sample_contract(start=start)
    contract["metrics"]["energy"] = {"aggregation": "sum", "unit": "kWh"}
    contract["charges"].append({"id": "spot", "model": "dynamic", "metric": "energy"})
    setup_contract(client, device_key, metrics=contract["metrics"], charges=contract["charges"])
    asset = {"id": contract["assets"][0], "description": "again", "public_key": device_key.public_pem}
    height = ledger.height()

    again = client.post("/v1/assets", json=asset, headers=auth("tok-provider"))
    assert again.status_code == 409 and again.json()["code"] == "asset_exists"
    stored = client.get(f"/v1/assets/{asset['id']}", headers=auth("tok-provider")).json()
    assert stored["description"] != "again"

    rival = sample_contract(start=start, id="ctr-mri-002")
    taken = client.post("/v1/contracts", json=rival, headers=auth("tok-provider"))
    assert taken.status_code == 409 and taken.json()["code"] == "asset_in_use"
    assert client.get("/v1/contracts/ctr-mri-002", headers=auth("tok-provider")).status_code == 404

    before_term = client.post(f"/v1/contracts/{CID}/periods/2001-01/close", headers=auth("tok-operator"))
    assert before_term.status_code == 400 and before_term.json()["code"] == "invalid_period"
    assert ledger.height() == height  # none of the three was committed

    spot = usage(device_key, "spot-1", [reading("e-1", "energy", "10", ts(_period, 4))])
    unpriced = post_usage(client, spot)
    assert unpriced.status_code == 400 and unpriced.json()["code"] == "missing_unit_price"
    assert unpriced.json()["reading_ids"] == ["e-1"]

    # a usage refusal is per message, judged inside a RecordUsage transaction: the reading is not recorded
    url = f"/v1/contracts/{CID}/usage"
    aggregate = client.get(url, params={"period": _period}, headers=auth("tok-auditor")).json()["aggregate"]
    assert aggregate["readings"] == 0 and aggregate["dynamic"] == {}
    for r in (again, taken, before_term, unpriced):
        assert r.headers["content-type"].startswith("application/problem+json")


class _OddLedger(ControlledLedger):
    """A ledger that answers one function with something the hub cannot use, or fails in a way no
    ledger error describes (a bug somewhere below the API)."""

    def __init__(self, inner, *, answers=None, crashes=None):
        super().__init__(inner)
        self.answers = answers or {}
        self.crashes = crashes or set()

    def evaluate(self, fn, args=(), *, as_org):
        if fn in self.crashes:
            raise RuntimeError("secret-internal-detail: disk controller on fire")
        if fn in self.answers:
            return self.answers[fn]
        return super().evaluate(fn, args, as_org=as_org)


def test_unusable_ledger_answers_and_unexpected_failures_are_problems_without_internals(tmp_path):
    inner = embedded_ledger(tmp_path / "ledger")
    odd = _OddLedger(inner, answers={"GetUsage": b'["not", "an", "object"]'})
    try:
        with hub_client(hub_settings(tmp_path), odd, background=False) as c:
            setup_contract(c, make_device_key("odd"))
            odd_answer = c.get(f"/v1/contracts/{CID}/usage", headers=auth("tok-customer"))
            assert odd_answer.status_code == 502 and odd_answer.json()["code"] == "unexpected_ledger_answer"
            odd.crashes.add("GetContract")
            crashed = c.get(f"/v1/contracts/{CID}", headers=auth("tok-provider"))
            assert crashed.status_code == 500
            assert crashed.headers["content-type"].startswith("application/problem+json")
            assert crashed.json()["code"] == "internal_error"
            assert "secret-internal-detail" not in crashed.text  # logged for the operator, not the caller
    finally:
        inner.close()
