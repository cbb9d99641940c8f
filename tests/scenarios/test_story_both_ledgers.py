"""The billing story through the hub's HTTP API, unchanged on both ledgers: the embedded ledger and a real
Fabric 3.1.5 network (`-m "not fabric"` runs the embedded half alone).

Every id a scenario writes carries a per-test suffix (`story.id(...)`): the Fabric network is one per session
and its channel keeps every other test's assets, contracts and invoices. The hub's event consumers read the
channel from block 0, so on Fabric each hub here also sees those other tests' invoices; the assertions
look at this test's own ids, and `test_a_new_hub_delivers_nothing_already_posted_on_the_ledger` checks that
what the hub does with the others is right.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.portal.alerts import verify_webhook
from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, reading, recent, sample_contract
from tests.helpers.delivery import sap_settings
from tests.helpers.erp import oracle_settings
from tests.helpers.story import (
    WEBHOOK_SECRET,
    Story,
    invoice_bytes,
    open_contract,
    open_ledger_for,
    wait_until,
)
from tests.helpers.webhooks import Receiver

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")
PERIOD, START = last_month()
UBL = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}


def period_end(period: str) -> dt.datetime:
    y, m = int(period[:4]), int(period[5:])
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return dt.datetime(y, m, 1, tzinfo=BERLIN)


def month_of_usage(story: Story, key: Any, device: str, prefix: str = "r") -> list[dict[str, Any]]:
    """120 scans and 8 x 0.75 magnet hours in PERIOD, in two signed messages: on the sample plan that is
    500 + 100 x 85 + 20 x 70 + 6 x 12.50 = 10475.00, tax 1990.25, total 12465.25."""
    readings = [reading(story.id(f"{prefix}-{i}"), "scan", "1", ts(PERIOD, 1 + i % 20)) for i in range(120)]
    readings += [
        reading(story.id(f"{prefix}-h{i}"), "magnet_hours", "0.75", ts(PERIOD, 10, 12)) for i in range(8)
    ]
    return [
        usage(key, story.id(f"{prefix}-m1"), readings[:64], device_id=device),
        usage(key, story.id(f"{prefix}-m2"), readings[64:], device_id=device),
    ]


def send_all(client: TestClient, messages: list[dict[str, Any]]) -> int:
    accepted = 0
    for message in messages:
        r = post_usage(client, message)
        assert r.status_code == 202, r.text
        accepted += r.json()["accepted"]
    return accepted


def invoice(client: TestClient, invoice_id: str, token: str = "tok-customer") -> dict[str, Any]:
    r = client.get(f"/v1/invoices/{invoice_id}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def deliveries_of(client: TestClient, invoice_id: str) -> dict[str, dict[str, Any]]:
    return {d["target"]: d for d in client.app.state.services.delivery.list(invoice_id=invoice_id)}


# --- assets, contracts, usage -----------------------------------------------------------------------


def test_assets_and_a_contract_both_orgs_endorse(story: Story) -> None:
    with story.hub() as client:
        contract, _ = open_contract(client, story, start=START)
        cid = contract["id"]
        asset_id = contract["assets"][0]
        asset = client.get(f"/v1/assets/{asset_id}", headers=auth("tok-provider"))
        assert asset.status_code == 200 and asset.json()["provider"] == PROVIDER
        assert client.get(f"/v1/assets/{asset_id}", headers=auth("tok-other-provider")).status_code == 404
        for token in ("tok-provider", "tok-customer", "tok-auditor"):
            got = client.get(f"/v1/contracts/{cid}", headers=auth(token))
            assert got.status_code == 200 and got.json()["status"] == "ACTIVE", token
        assert client.get(f"/v1/contracts/{cid}", headers=auth("tok-other-customer")).status_code == 404
        # the acceptance carries both orgs' endorsements: the contract key needs provider AND customer
        accepted = story.ledger.tx(contract["accepted_tx"])
        assert accepted.status == "VALID"
        assert {PROVIDER, CUSTOMER} <= {e.msp_id for e in accepted.endorsements}
        # a provider cannot accept its own proposal; the same asset cannot be leased twice at once
        r = client.post(f"/v1/contracts/{cid}/accept", headers=auth("tok-provider"))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        second = sample_contract(id=story.id("ctr-two"), assets=[asset_id], start=START)
        r = client.post("/v1/contracts", json=second, headers=auth("tok-provider"))
        assert r.status_code == 409 and r.json()["code"] == "asset_in_use", r.text


def test_usage_with_replays_duplicates_and_forgeries(story: Story) -> None:
    with story.hub() as client:
        contract, (key,) = open_contract(client, story, start=START)
        device = contract["assets"][0]
        first = usage(key, story.id("m1"), [reading(story.id("r1"), timestamp=ts(PERIOD, 3)),
                                           reading(story.id("r2"), timestamp=ts(PERIOD, 4))],
                      device_id=device)
        r = post_usage(client, first)
        assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
        answer = r.json()
        assert story.ledger.tx(answer["tx_id"]).block == answer["block"]
        # a replayed message id gets the first answer, and nothing is written again
        for _ in range(2):
            again = post_usage(client, first)
            assert again.status_code == 202 and again.json() == answer
        # the same readings under a new message id are duplicates; one new reading among them is accepted
        dup = post_usage(client, usage(key, story.id("m2"), first["readings"], device_id=device))
        assert dup.status_code == 409 and dup.json()["code"] == "duplicate_reading"
        assert sorted(dup.json()["reading_ids"]) == sorted([story.id("r1"), story.id("r2")])
        partial = post_usage(client, usage(key, story.id("m3"), [
            first["readings"][1], reading(story.id("r3"), timestamp=ts(PERIOD, 5))], device_id=device))
        assert partial.status_code == 202, partial.text
        assert partial.json()["accepted"] == 1 and partial.json()["duplicates"] == [story.id("r2")]
        # forged: altered after signing, or signed by a key that is not the device's
        genuine = usage(key, story.id("m4"), [reading(story.id("r4"), quantity="3", timestamp=ts(PERIOD, 6))],
                        device_id=device)
        forged = {**genuine, "readings": [{**genuine["readings"][0], "quantity": "300"}]}
        r = post_usage(client, forged)
        assert r.status_code == 400 and r.json()["code"] == "bad_signature"
        intruder = usage(make_device_key("intruder"), story.id("m5"),
                         [reading(story.id("r5"), timestamp=ts(PERIOD, 6))], device_id=device)
        r = post_usage(client, intruder)
        assert r.status_code == 400 and r.json()["code"] == "bad_signature"
        # the forgery did not claim the message id: the genuine message goes through
        ok = post_usage(client, genuine)
        assert ok.status_code == 202 and ok.json()["accepted"] == 1
        to_date = client.get(f"/v1/contracts/{contract['id']}/usage", params={"period": PERIOD},
                             headers=auth("tok-customer"))
        assert to_date.status_code == 200, to_date.text
        assert Decimal(to_date.json()["aggregate"]["metrics"]["scan"]["sum"]) == Decimal(6)


def several_devices(story: Story, *, shared_reading_ids: bool) -> None:
    """Three devices on one contract, each signing its own messages; the period's invoice counts all."""
    with story.hub() as client:
        contract, keys = open_contract(client, story, devices=3, start=START)
        cid = contract["id"]
        for n, (device, key) in enumerate(zip(contract["assets"], keys, strict=True)):
            readings = [
                reading(f"r-{i}" if shared_reading_ids else story.id(f"d{n}-r{i}"), "scan", "1",
                        ts(PERIOD, 2 + n, 9, i)) for i in range(10 * (n + 1))
            ]
            r = post_usage(client, usage(key, story.id(f"d{n}-m"), readings, device_id=device))
            assert r.status_code == 202 and r.json()["accepted"] == len(readings), r.text
        # a device cannot sign for another one
        cross = [reading(story.id("x"), timestamp=ts(PERIOD, 9))]
        r = post_usage(client, usage(keys[0], story.id("cross"), cross, device_id=contract["assets"][1]))
        assert r.status_code == 400 and r.json()["code"] == "bad_signature"
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        issued = closed.json()
        assert issued["readings"] == 60
        lines = {line["charge_id"]: line for line in issued["lines"]}
        assert lines["scans"]["quantity"] == "60" and lines["scans"]["amount"] == "5100.00"


def test_several_devices_on_one_contract(story: Story) -> None:
    several_devices(story, shared_reading_ids=False)


def test_several_devices_on_one_contract_sharing_reading_ids(story: Story) -> None:
    """Issue 13 item 1: devices number their own readings, so three devices all send r-000001... and every
    one of them is billed (a reading's identity is (device, reading id))."""
    several_devices(story, shared_reading_ids=True)


# --- period close by the scheduler, delivery to both ERPs, reconciliation ---------------------------


def test_scheduler_closes_the_period_erps_get_it_and_payment_settles_it(story: Story) -> None:
    shift = [period_end(PERIOD) - dt.timedelta(hours=1) - dt.datetime.now(dt.UTC)]

    def clock() -> dt.datetime:  # the hub's clock: real time moved to just before PERIOD ends, then after
        return dt.datetime.now(dt.UTC) + shift[0]

    with SapSoapEmulator() as sap, OracleRestEmulator(shared_dir=None) as oracle:
        connectors = {"sap-soap": sap_settings(sap), "oracle-rest": oracle_settings(oracle)}
        with story.hub(background=True, scheduler=True, clock=clock, connectors=connectors) as client:
            erp_story(story, client, sap, oracle, shift)


def erp_story(story: Story, client: TestClient, sap: Any, oracle: Any, shift: list[dt.timedelta]) -> None:
    contract, (key,) = open_contract(client, story, start=START,
                                     erp={"provider": "sap-soap", "customer": "oracle-rest"})
    cid, invoice_id = contract["id"], f"inv-{story.id('ctr')}-{PERIOD}"
    assert send_all(client, month_of_usage(story, key, contract["assets"][0])) == 128
    scheduler = client.app.state.services.scheduler.scheduler
    assert client.get("/v1/invoices", params={"contract": cid}, headers=auth("tok-provider")).json()[
        "items"] == []  # the scheduler ran at start-up; the period had not ended on the hub's clock
    # the period ends, the grace hour passes; the scheduler's close job runs as it does in the app
    shift[0] = period_end(PERIOD) + dt.timedelta(hours=1, minutes=5) - dt.datetime.now(dt.UTC)
    scheduler.modify_job("close-periods", next_run_time=dt.datetime.now(dt.UTC))
    items = wait_until("the scheduler to close the period", lambda: client.get(
        "/v1/invoices", params={"contract": cid}, headers=auth("tok-provider")).json()["items"])
    assert [(i["id"], i["status"]) for i in items] in ([(invoice_id, "ISSUED")], [(invoice_id, "POSTED")])
    issued = invoice(client, invoice_id)
    assert (issued["subtotal"], issued["tax"], issued["total"]) == ("10475.00", "1990.25", "12465.25")
    assert issued["readings"] == 128
    # the background delivery engine posts the receivable to SAP and the payable to Oracle
    rows = wait_until("both deliveries", lambda: (lambda d: d if len(d) == 2 and all(
        r["state"] == "delivered" for r in d.values()) else None)(deliveries_of(client, invoice_id)))
    (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
    (ap,) = [p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice_id]
    total = Decimal(issued["total"])
    assert ar["partner_kind"] == "debtor" and Decimal(str(ar["amount"])) == total
    assert Decimal(ap["InvoiceAmount"]) == total
    posted = wait_until("POSTED with both refs", lambda: (
        lambda i: i if len(i["erp_refs"]) == 2 else None)(invoice(client, invoice_id, "tok-provider")))
    assert posted["status"] == "POSTED"
    refs = {r["target"]: r for r in posted["erp_refs"]}
    assert refs["provider"]["document_id"] == ar["accounting_document"] == rows["provider"]["erp_ref"][
        "document_id"]
    assert refs["customer"]["document_id"] == str(ap["InvoiceId"])
    ubl = client.get(f"/v1/invoices/{invoice_id}/ubl", headers=auth("tok-customer"))
    assert ubl.status_code == 200, ubl.text
    root = etree.fromstring(ubl.content)
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=UBL) == "12465.25"
    # the customer pays; both ERPs show it; the scheduler's reconciliation job records it once
    sap.state.pay(ar["company_code"], ar["accounting_document"], ar["fiscal_year"], total)
    oracle.pay("invoices", int(ap["InvoiceId"]), total)
    scheduler.modify_job("delivery-reconcile", next_run_time=dt.datetime.now(dt.UTC))
    settled = wait_until("SETTLED", lambda: (lambda i: i if i["status"] == "SETTLED" else None)(
        invoice(client, invoice_id)))
    assert Decimal(settled["paid"]) == total and len(settled["payments"]) == 1
    listed = wait_until("the read model to say SETTLED", lambda: client.get(
        "/v1/invoices", params={"contract": cid, "status": "SETTLED"},
        headers=auth("tok-customer")).json()["items"])
    assert [i["id"] for i in listed] == [invoice_id]
    assert client.get(f"/v1/invoices/{invoice_id}", headers=auth("tok-other-customer")).status_code == 404


# --- dispute, credit note, e-invoice drop ------------------------------------------------------------


def test_dispute_and_credit_note_reach_sap_and_the_ubl_drop(story: Story) -> None:
    drop = story.tmp / "peppol-drop"
    with SapSoapEmulator() as sap, story.hub(connectors={"sap-soap": sap_settings(sap),
                                                         "ubl-drop": {"directory": str(drop)}}) as client:
        contract, (key,) = open_contract(client, story, start=START,
                                         erp={"provider": "sap-soap", "customer": "ubl-drop"})
        cid = contract["id"]
        send_all(client, month_of_usage(story, key, contract["assets"][0]))
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice_id = closed.json()["id"]
        engine = client.app.state.services.delivery
        engine.run_until_idle()
        rows = deliveries_of(client, invoice_id)
        assert {t: r["state"] for t, r in rows.items()} == {"provider": "delivered", "customer": "delivered"}
        sent = etree.parse(str(drop / f"{invoice_id}.xml")).getroot()
        assert sent.findtext("cbc:ID", namespaces=UBL) == invoice_id
        assert sent.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=UBL) == "12465.25"

        disputed = client.post(f"/v1/invoices/{invoice_id}/dispute", json={"reason": "scan count"},
                               headers=auth("tok-customer"))
        assert disputed.status_code == 200 and disputed.json()["status"] == "DISPUTED", disputed.text
        refused = client.post(f"/v1/invoices/{invoice_id}/credit-notes", json={"reason": "no"},
                              headers=auth("tok-customer"))
        assert refused.status_code == 403
        note = client.post(f"/v1/invoices/{invoice_id}/credit-notes", json={"reason": "agreed",
                                                                           "amount": "100.00"},
                           headers=auth("tok-provider"))
        assert note.status_code == 201, note.text
        note_id = note.json()["id"]
        assert note_id.startswith(f"cn-{invoice_id}-") and note.json()["total"] == "100.00"
        assert invoice(client, invoice_id, "tok-auditor")["status"] == "CREDITED"
        twice = client.post(f"/v1/invoices/{invoice_id}/dispute", json={"reason": "again"},
                            headers=auth("tok-customer"))
        assert twice.status_code == 409 and twice.json()["code"] == "invalid_state_transition"
        engine.run_until_idle()
        notes = deliveries_of(client, note_id)
        assert {t: r["state"] for t, r in notes.items()} == {"provider": "delivered", "customer": "delivered"}
        assert len([p for p in sap.postings() if p["item_text"] == note_id]) == 1
        credit = etree.parse(str(drop / f"{note_id}.xml")).getroot()
        assert etree.QName(credit).localname == "CreditNote"
        on_ledger = invoice(client, note_id, "tok-provider")
        assert {r["target"] for r in on_ledger["erp_refs"]} == {"provider", "customer"}
        ids = {i["id"] for i in client.get("/v1/invoices", params={"contract": cid},
                                           headers=auth("tok-customer")).json()["items"]}
        assert ids == {invoice_id, note_id}


# --- alerts and the portal's data -------------------------------------------------------------------


def test_alerts_and_the_portal_data(story: Story) -> None:
    receiver = Receiver()
    try:
        with story.hub() as client:
            contract, (key,) = open_contract(client, story, start=START, minimum_commitment=None)
            cid, device = contract["id"], contract["assets"][0]
            for n, (scans, hours) in enumerate((("30", "0.5"), ("12", "1.25"))):
                message = usage(key, story.id(f"now{n}"), [
                    reading(story.id(f"now{n}-s"), "scan", scans, recent(20)),
                    reading(story.id(f"now{n}-h"), "magnet_hours", hours, recent(19))], device_id=device)
                assert post_usage(client, message).status_code == 202
            to_date = client.get(f"/v1/contracts/{cid}/usage", headers=auth("tok-customer"))
            assert to_date.status_code == 200, to_date.text
            assert Decimal(to_date.json()["aggregate"]["metrics"]["scan"]["sum"]) == 42
            forecast = Decimal(to_date.json()["forecast"]["total"])
            series = client.get(f"/v1/contracts/{cid}/usage/series", headers=auth("tok-customer")).json()
            assert sum(Decimal(v) for v in series["metrics"]["scan"]["values"] if v is not None) == 42
            assert sum(Decimal(v) for v in series["metrics"]["magnet_hours"]["values"] if v is not None) == \
                Decimal("1.75")
            # the charts' other series come from the same daily aggregates, folded in through Ledger.tx
            cost = client.get(f"/v1/contracts/{cid}/usage/cost-series", headers=auth("tok-customer")).json()
            assert [v for v in cost["cumulative"] if v is not None][-1] == to_date.json()["cost"]["total"]
            assets = client.get(f"/v1/contracts/{cid}/usage/assets", headers=auth("tok-customer")).json()
            assert [(a["asset_id"], a["metrics"]["scan"]) for a in assets["assets"]] == [(device, "42")]
            book = client.get("/v1/portal/provider", headers=auth("tok-provider")).json()["contracts"]
            assert [c["usage_to_date"] for c in book if c["id"] == cid] == [to_date.json()["cost"]["total"]]
            rule = client.put(f"/v1/contracts/{cid}/alert-rules", headers=auth("tok-customer"),
                              json={"budget": str(forecast - 1),
                                    "webhooks": [{"url": receiver.url, "secret": WEBHOOK_SECRET}]})
            assert rule.status_code == 200, rule.text
            assert client.get(f"/v1/contracts/{cid}/alert-rules", headers=auth("tok-customer")).json()[
                "budget"] == str(forecast - 1)
            alerts = client.get("/v1/alerts", params={"contract": cid}, headers=auth("tok-customer")).json()[
                "alerts"]
            assert sorted(a["kind"] for a in alerts) == ["budget_100", "budget_80"]
            assert client.get("/v1/alerts", params={"contract": cid}, headers=auth("tok-provider")).json()[
                "alerts"] == []
            assert client.get("/v1/alerts", params={"contract": cid},
                              headers=auth("tok-other-customer")).status_code == 404
            client.app.state.services.delivery.run_until_idle()
            mine = [(h, b) for h, b, _status in receiver.requests
                    if json.loads(b)["alert"]["contract_id"] == cid]
            assert len(mine) == 2 and all(verify_webhook(WEBHOOK_SECRET, b, h) for h, b in mine)
            assert client.get("/portal").status_code == 200
            assert client.get("/v1/contracts", headers=auth("tok-customer")).status_code == 200
    finally:
        receiver.close()


# --- the same inputs give the same invoice bytes on both ledgers ---------------------------------------


def close_through_the_api(story: Story, client: TestClient) -> dict[str, Any]:
    """One contract, a month of usage from two devices, closed by the operator: the invoice as stored."""
    contract, keys = open_contract(client, story, devices=2, start=START,
                                   keys=[make_device_key("bytes-0"), make_device_key("bytes-1")])
    for n, (device, key) in enumerate(zip(contract["assets"], keys, strict=True)):
        send_all(client, month_of_usage(story, key, device, prefix=f"d{n}"))
    r = client.post(f"/v1/contracts/{contract['id']}/periods/{PERIOD}/close", headers=auth("tok-operator"))
    assert r.status_code == 200, r.text
    stored = json.loads(story.ledger.evaluate("GetInvoice", [json.dumps({"id": r.json()["id"]})],
                                              as_org=CUSTOMER))
    return {"ledger": stored, "api": invoice(client, stored["id"], "tok-auditor")}


@pytest.mark.fabric
def test_the_invoice_is_byte_for_byte_the_same_on_both_ledgers(request: pytest.FixtureRequest,
                                                                 tmp_path: Any) -> None:
    import uuid

    suffix = uuid.uuid4().hex[:10]
    got = {}
    for kind in ("embedded", "fabric"):
        ledger = open_ledger_for(kind, request, tmp_path / kind)
        try:
            story = Story(kind=kind, ledger=ledger, suffix=suffix, tmp=tmp_path / kind)
            with story.hub() as client:
                got[kind] = close_through_the_api(story, client)
        finally:
            ledger.close()
    fabric, embedded = got["fabric"], got["embedded"]
    assert fabric["ledger"]["total"] == "22550.50" and fabric["ledger"]["readings"] == 256
    assert fabric["ledger"]["tx_id"] != embedded["ledger"]["tx_id"]  # two ledgers really ran
    # the record as the chaincode stored it, and the hub's answer to GET /v1/invoices/{id}
    assert invoice_bytes(fabric["ledger"]) == invoice_bytes(embedded["ledger"])
    assert invoice_bytes(fabric["api"]) == invoice_bytes(embedded["api"])


# --- a hub that sees invoices another hub already delivered --------------------------------------------


def delivered_by_hub_a(story: Story, sap: Any) -> str:
    """Hub A delivers a month's invoice to `sap` for both targets; returns the invoice id."""
    both = {"provider": "sap-soap", "customer": "sap-soap"}
    with story.hub("hub-a", connectors={"sap-soap": sap_settings(sap)}) as a:
        contract, (key,) = open_contract(a, story, start=START, erp=both)
        send_all(a, month_of_usage(story, key, contract["assets"][0]))
        closed = a.post(f"/v1/contracts/{contract['id']}/periods/{PERIOD}/close",
                        headers=auth("tok-operator"))
        invoice_id = closed.json()["id"]
        a.app.state.services.delivery.run_until_idle()
        assert {r["state"] for r in deliveries_of(a, invoice_id).values()} == {"delivered"}
    assert len([p for p in sap.postings() if p["item_text"] == invoice_id]) == 2
    return invoice_id


def test_a_second_hub_posts_nothing_the_ledger_says_another_erp_holds(story: Story) -> None:
    """A second hub on the channel (or this hub with a rebuilt database) reads every InvoiceIssued from
    block 0, here and on Fabric's shared channel alike. An invoice whose postings the ledger already records
    must not go into this hub's ERP a second time, nor dead-letter on the ledger's `posting_conflict`."""
    with SapSoapEmulator() as sap_a, SapSoapEmulator() as sap_b:
        invoice_id = delivered_by_hub_a(story, sap_a)
        with story.hub("hub-b", connectors={"sap-soap": sap_settings(sap_b)}) as b:
            engine = b.app.state.services.delivery
            engine.run_until_idle()
            assert [p for p in sap_b.postings() if p["item_text"] == invoice_id] == []
            on_ledger = invoice(b, invoice_id, "tok-provider")
            assert on_ledger["status"] == "POSTED"
            refs = {r["target"]: r["document_id"] for r in on_ledger["erp_refs"]}
            rows = deliveries_of(b, invoice_id)
            seen = {t: (r["state"], r["erp_state"], r["erp_ref"]["document_id"]) for t, r in rows.items()}
            assert seen == {t: ("delivered", "posted_elsewhere", refs[t]) for t in ("provider", "customer")}
            report = engine.reconcile_once()  # this ERP does not hold them: nothing to read, nothing failing
            assert not [e for e in report.errors if invoice_id in e]
