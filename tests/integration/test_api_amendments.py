"""Amendments and the exact preview through the HTTP API, on the real embedded ledger (ADR 0046, 0047).

The network's clock (and the hub's) is a test clock, so October 2026 can be lived through: the contract
runs from 1 October, version 2 is agreed on 20 October effective 26 October 00:00 CET (after the DST
change of the 25th), readings arrive on the 31st, and the period closes on 1 November. The invoice is the
hand computation of tests/unit/test_contract_amendments.py (subtotal 3115.97, tax 592.03, total 3708.00).
Refusals answer their stable code and leave the ledger height and the contract as they were.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.api import auth, hub_client, hub_settings, post_usage, usage
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    PROVIDER,
    make_device_key,
    sample_asset,
    sample_contract,
)
from tests.helpers.embedded import Clock, contract_ledger
from tests.unit.test_contract_amendments import EFFECTIVE, EXPECTED_LINES, PLAN_V1, PLAN_V2, october_readings

pytestmark = pytest.mark.integration
U = dt.UTC
KEY = make_device_key("amend-api")
C = f"/v1/contracts/{CONTRACT_ID}"


@pytest.fixture
def october(tmp_path: Path) -> Iterator[tuple[TestClient, EmbeddedLedger, Clock]]:
    clock = Clock(dt.datetime(2026, 10, 1, 8, tzinfo=U))
    ledger = contract_ledger(tmp_path / "ledger", clock)
    try:
        with hub_client(hub_settings(tmp_path), ledger, background=False, clock=clock) as client:
            r = client.post("/v1/assets", json=sample_asset(KEY), headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            r = client.post("/v1/contracts", json=sample_contract(**PLAN_V1), headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            r = client.post(f"{C}/accept", headers=auth("tok-customer"))
            assert r.json()["status"] == "ACTIVE", r.text
            yield client, ledger, clock
    finally:
        ledger.close()


def propose(client: TestClient, token: str = "tok-provider", **body: Any) -> Any:
    return client.post(f"{C}/amendments", json=body, headers=auth(token))


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [(ln["charge_id"], ln["plan_version"], ln["quantity"], ln["amount"]) for ln in invoice["lines"]]


def test_mid_period_price_change_across_dst_through_the_api(october) -> None:
    client, ledger, clock = october
    clock.now = dt.datetime(2026, 10, 20, 9, tzinfo=U)
    r = propose(client, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2, note="new price list 2027")
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["effective_from"]) == ("PROPOSED", "2026-10-25T23:00:00Z")
    assert client.get(f"{C}/amendments/am-1", headers=auth("tok-customer")).json()["status"] == "PROPOSED"
    r = client.post(f"{C}/amendments/am-1/accept", headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    accepted, contract = r.json()["amendment"], r.json()["contract"]
    assert (accepted["status"], accepted["version"]) == ("ACCEPTED", 2)
    assert (contract["plan_version"], contract["minimum_commitment"]) == (2, "3600.00")
    # the acceptance is a transaction both orgs endorsed
    tx = ledger.tx(accepted["answered_tx"])
    assert tx.status == "VALID" and {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}

    clock.now = dt.datetime(2026, 10, 31, 12, tzinfo=U)
    sent = post_usage(client, usage(KEY, "m-oct", october_readings()))
    assert sent.status_code == 202 and sent.json()["accepted"] == 23, sent.text
    r = client.get(f"{C}/periods/2026-10/preview", headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["status"] == "OPEN" and lines(preview["invoice"]) == EXPECTED_LINES
    assert preview["invoice"]["total"] == "3708.00"
    assert preview["forecast"]["method"] == "linear_run_rate"  # the estimate, beside the exact invoice
    height = ledger.height()
    volatile = {"tx_id", "issued_at", "history", "block", "payment_reference"}
    again = client.get(f"{C}/periods/2026-10/preview", headers=auth("tok-auditor")).json()["invoice"]
    assert {k: v for k, v in again.items() if k not in volatile} == {
        k: v for k, v in preview["invoice"].items() if k not in volatile}
    assert ledger.height() == height  # a preview is a query: no transaction

    clock.now = dt.datetime(2026, 11, 1, 12, tzinfo=U)
    r = client.post(f"{C}/periods/2026-10/close", headers=auth("tok-operator"))
    assert r.status_code == 200, r.text
    invoice = client.get(f"/v1/invoices/{r.json()['id']}", headers=auth("tok-customer")).json()
    assert lines(invoice) == EXPECTED_LINES
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("3115.97", "592.03", "3708.00")
    assert {k: v for k, v in preview["invoice"].items() if k not in volatile} == {
        k: v for k, v in invoice.items() if k not in volatile and k in preview["invoice"]}

    history = client.get(f"{C}/history", headers=auth("tok-auditor")).json()
    assert [(v["version"], v["effective_from"]) for v in history["versions"]] == [
        (1, None), (2, "2026-10-25T23:00:00Z")]
    assert history["versions"][1]["accepted_tx"] == accepted["answered_tx"]
    assert history["amendments"][0]["note"] == "new price list 2027"


def test_refusals_write_nothing(october) -> None:
    client, ledger, clock = october

    def refused(response: Any, status: int, code: str) -> None:
        assert (response.status_code, response.json().get("code")) == (status, code), response.text

    clock.now = dt.datetime(2026, 10, 20, 9, tzinfo=U)
    assert propose(client, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2).status_code == 201
    height, contract = ledger.height(), client.get(C, headers=auth("tok-provider")).json()
    refused(propose(client, id="am-2", effective_from="2026-10-28T00:00:00Z", plan=PLAN_V2), 409,
            "amendment_pending")
    refused(propose(client, id="am-1", effective_from="2026-10-28T00:00:00Z", plan=PLAN_V2), 409,
            "amendment_exists")
    refused(propose(client, "tok-customer", id="am-3", effective_from=EFFECTIVE, plan=PLAN_V2), 403,
            "forbidden")
    refused(client.post(f"{C}/amendments/am-1/accept", headers=auth("tok-provider")), 403, "forbidden")
    refused(client.post(f"{C}/amendments/am-1/accept", headers=auth("tok-other-customer")), 404,
            "unknown_contract")
    assert ledger.height() == height
    # once agreed: an amendment effective at or before version 2's instant overlaps it
    assert client.post(f"{C}/amendments/am-1/accept", headers=auth("tok-customer")).status_code == 200
    height = ledger.height()
    refused(propose(client, id="am-4", effective_from="2026-10-24T00:00:00Z", plan=PLAN_V1), 409,
            "amendment_overlaps")
    refused(propose(client, id="am-4", effective_from="2026-10-19T00:00:00Z", plan=PLAN_V1), 409,
            "amendment_in_past")
    refused(propose(client, id="am-4", effective_from="2026-11-01T00:00:00Z",
                    plan={**PLAN_V1, "currency": "USD"}), 400, "amendment_changes_fixed_terms")
    assert ledger.height() == height
    after = client.get(C, headers=auth("tok-provider")).json()
    assert after["plan_version"] == 2 and contract.get("plan_version") is None


def test_reject_and_an_agreed_end_with_its_final_invoice(october) -> None:
    client, _ledger, clock = october
    clock.now = dt.datetime(2026, 10, 10, 9, tzinfo=U)
    assert propose(client, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2).status_code == 201
    r = client.post(f"{C}/amendments/am-1/reject", json={"reason": "not agreed"},
                    headers=auth("tok-customer"))
    assert (r.status_code, r.json()["status"], r.json()["reason"]) == (200, "REJECTED", "not agreed")
    assert client.get(C, headers=auth("tok-customer")).json().get("versions") is None
    r = propose(client, id="end-1", end="2026-10-15")
    assert r.status_code == 201 and r.json()["kind"] == "end", r.text
    r = client.post(f"{C}/amendments/end-1/accept", headers=auth("tok-customer"))
    assert r.json()["contract"]["end"] == "2026-10-15", r.text
    clock.now = dt.datetime(2026, 10, 15, 12, tzinfo=U)
    r = client.post(f"{C}/periods/2026-10/close", headers=auth("tok-operator"))
    assert (r.status_code, r.json()["code"]) == (409, "period_not_ended")  # the contract runs to the 16th
    clock.now = dt.datetime(2026, 10, 16, 1, tzinfo=U)
    r = client.post(f"{C}/periods/2026-10/close", headers=auth("tok-operator"))
    assert r.status_code == 200, r.text
    assert [(ln["charge_id"], ln["amount"]) for ln in r.json()["lines"]] == [
        ("platform", "241.61"), ("scans", "0.00"), ("minimum_commitment_true_up", "1208.05")]
    assert client.get(C, headers=auth("tok-customer")).json()["status"] == "ENDED"
    history = client.get(f"{C}/history", headers=auth("tok-provider")).json()
    assert [(a["id"], a["status"]) for a in history["amendments"]] == [("am-1", "REJECTED"),
                                                                       ("end-1", "ACCEPTED")]
    assert history["ended_by"]["amendment_id"] == "end-1"
    assert json.loads(json.dumps(history))["plan_version"] == 1


def test_the_scheduler_issues_the_final_invoice_once_the_agreed_end_has_passed(october) -> None:
    client, _ledger, clock = october
    clock.now = dt.datetime(2026, 10, 10, 9, tzinfo=U)
    assert propose(client, id="end-1", end="2026-10-15").status_code == 201
    assert client.post(f"{C}/amendments/end-1/accept", headers=auth("tok-customer")).status_code == 200
    closer = client.app.state.services.closer
    grace = closer.grace
    ended = dt.datetime(2026, 10, 15, 22, tzinfo=U)  # 16 Oct 00:00 CEST
    clock.now = ended + grace - dt.timedelta(seconds=1)
    assert closer.run_once() == []  # still within the grace time after the end
    clock.now = ended + grace
    assert closer.run_once() == [f"inv-{CONTRACT_ID}-2026-10"]  # weeks before the month is over
    assert client.get(C, headers=auth("tok-customer")).json()["status"] == "ENDED"
