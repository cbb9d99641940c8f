"""Prepaid drawdown through the API on the embedded ledger (ADR 0051): a contract funded by a bank credit
quoting its top-up reference; every committed usage batch draws the balance down in real time (GET …/usage
shows it); the balance runs out, is flagged low (one alert per crossing) and a pain.008 top-up collection is
written exactly once; the bank's credit for it funds the balance; the invoice is SETTLED at issue with the
balance history matching the readings to the cent; the unused balance is refunded by a credit note at
contract end; a returned top-up takes the money back."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from lxml import etree

from chaincode import creditor_ref
from hub.bank.mandate_router import money_jobs
from hub.bank.sepa import schema_path
from tests.helpers.api import MASTER_DATA, auth, last_month, post_usage, setup_contract, ts, usage
from tests.helpers.bank import Story
from tests.helpers.camt import E, camt
from tests.helpers.chaincode import make_device_key, reading

pytestmark = pytest.mark.integration
PERIOD, START = last_month()
# the last day of PERIOD: closing it ends the contract
END = (dt.date.fromisoformat(START).replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(1)
PARTIES = {**MASTER_DATA, "ProviderMSP": {**MASTER_DATA["ProviderMSP"], "erp_ids": {
    "iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "sepa_creditor_id": "DE98ZZZ09999999999"}}}
MANDATE = {"debtor_org": "CustomerMSP", "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
           "bic": "BYLADEM1001", "mandate_id": "MNDT-PREPAID-1", "signed_on": "2026-10-01", "scheme": "CORE"}
P = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.08"


def expected_cost(scans: int) -> Decimal:
    """The sample plan by hand: platform 500 + 85 a scan (first 100), at least 2000, plus 19 % VAT."""
    subtotal = max(Decimal(500) + Decimal(85) * scans, Decimal(2000))
    return (subtotal * Decimal("1.19")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) + 0


def _send(story: Story, key, n: int, scans: int, device: str) -> None:
    readings = [reading(f"b{n}-{i}", "scan", "1", ts(PERIOD, 2 + n, 9, i)) for i in range(scans)]
    sent = post_usage(story.client, usage(key, f"pm-{n}", readings, device_id=device))
    assert sent.status_code == 202, sent.text


def _usage(story: Story, cid: str) -> dict:
    r = story.client.get(f"/v1/contracts/{cid}/usage", params={"period": PERIOD},
                         headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("story", [{"parties": PARTIES}], indirect=True)
def test_a_prepaid_month_drawn_per_batch_topped_up_settled_at_issue_and_refunded(story: Story) -> None:
    client = story.client
    key = make_device_key("prepaid-draw")
    contract = setup_contract(client, key, id="ctr-draw", assets=["mri-draw"], end=END.isoformat(),
                              prepaid={"low_balance": "500.00", "top_up_amount": "2000.00"})
    cid = contract["id"]
    put = client.put(f"/v1/contracts/{cid}/mandate", json=MANDATE, headers=auth("tok-provider"))
    assert put.status_code == 200, put.text
    reference = creditor_ref.for_top_up(cid)
    funded = story.send(camt([E("TOPUP-A", "3000.00", rf=reference)], msg_id="S-A")).json()
    assert [r["balance"] for r in funded["recorded"]] == ["3000.00"]
    jobs = money_jobs(client.app.state.services)
    # batch 1: 4 scans (the minimum commitment applies): drawn at once
    _send(story, key, 1, 4, "mri-draw")
    shown = _usage(story, cid)["prepaid"]
    assert (shown["balance"], shown["drawn"], shown["undrawn"]) == ("620.00", "2380.00", "0.00")
    assert jobs.run_once() == {"interims": [], "alerts": [], "top_ups": [], "refunds": []}
    # batch 2: 20 more scans cost 3022.60 to date, the balance holds 620 more: it runs out, is flagged low
    _send(story, key, 2, 20, "mri-draw")
    shown = _usage(story, cid)["prepaid"]
    assert (shown["balance"], shown["drawn"], shown["undrawn"], shown["low_balance"]) == (
        "0.00", "3000.00", "22.60", "true")
    ran = jobs.run_once()
    assert len(ran["alerts"]) == 2 and len(ran["top_ups"]) == 1  # both parties alerted, one collection
    assert jobs.run_once() == {"interims": [], "alerts": [], "top_ups": [], "refunds": []}  # exactly once
    (path,) = list(jobs.directory.glob("topup-*.pain008.xml"))
    doc = etree.fromstring(path.read_bytes())
    assert etree.XMLSchema(etree.parse(str(schema_path()))).validate(doc)
    ns = {"p": P}
    assert doc.findtext(".//p:DrctDbtTxInf/p:InstdAmt", namespaces=ns) == "2000.00"
    assert doc.findtext(".//p:RmtInf/p:Strd/p:CdtrRefInf/p:Ref", namespaces=ns) == reference
    alerts = client.get(f"/v1/alerts?contract={cid}", headers=auth("tok-customer")).json()["alerts"]
    assert [a["kind"] for a in alerts] == ["prepaid_low_balance"]
    # the bank credits the collection (it quotes the top-up reference): the balance is funded again
    credited = story.send(camt([E("SDD-TOPUP-1", "2000.00", rf=reference, e2e=reference)], msg_id="S-B"))
    assert [r["balance"] for r in credited.json()["recorded"]] == ["2000.00"]
    # batch 3: the next batch draws what batch 2 could not, and its own cost
    _send(story, key, 3, 2, "mri-draw")
    shown = _usage(story, cid)["prepaid"]
    assert (shown["drawn"], shown["undrawn"]) == (str(expected_cost(26)), "0.00")
    history = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-customer")).json()["draws"]
    costs = [expected_cost(4), expected_cost(24), expected_cost(26)]
    assert [Decimal(d["cost_to_date"]) for d in history] == costs  # the readings, to the cent
    assert [Decimal(d["amount"]) for d in history] == [Decimal("2380.00"), Decimal("620.00"),
                                                       expected_cost(26) - Decimal("3000.00")]
    assert [d["balance"] for d in history] == ["620.00", "0.00", str(Decimal("5000.00") - expected_cost(26))]
    # the period closes: the invoice is issued SETTLED by what was drawn (days sales outstanding zero)
    closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    invoice = closed.json()
    assert (invoice["status"], invoice["settled_by"], Decimal(invoice["total"])) == (
        "SETTLED", "prepaid", expected_cost(26))
    # the contract has ended: the job refunds what is left by a credit note
    left = Decimal("5000.00") - expected_cost(26)
    ran = jobs.run_once()
    (note_id,) = ran["refunds"]
    note = client.get(f"/v1/invoices/{note_id}", headers=auth("tok-customer")).json()
    assert (note["type"], Decimal(note["total"]), note["credit_for"]) == ("credit_note", left, invoice["id"])
    after = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-customer")).json()
    assert after["balance"] == "0.00" and after["movements"][-1]["kind"] == "refund"
    assert jobs.run_once()["refunds"] == []
    again = client.post(f"/v1/contracts/{cid}/prepaid/refund", headers=auth("tok-operator"))
    assert again.status_code == 200 and again.json()["id"] == note_id  # asked again: the same credit note


def test_a_returned_top_up_takes_the_money_back_and_alerts_both_parties(story: Story) -> None:
    client = story.client
    key = make_device_key("prepaid-return")
    contract = setup_contract(client, key, id="ctr-return", assets=["mri-return"])
    cid = contract["id"]
    reference = creditor_ref.for_top_up(cid)
    story.send(camt([E("TOPUP-R", "3000.00", rf=reference, e2e="E2E-TOPUP-R")], msg_id="S-R1"))
    _send(story, key, 1, 4, "mri-return")
    assert _usage(story, cid)["prepaid"]["balance"] == "620.00"
    back = story.send(camt([E("TOPUP-R-RET", "3000.00", credit=False, reversal=True, reason="AM04",
                              e2e="E2E-TOPUP-R", rf=reference)], msg_id="S-R2")).json()
    returned = [(r["top_up"], r["balance"], r["unrecovered"]) for r in back["reversed"]]
    assert returned == [(cid, "0.00", "0.00")]
    shown = _usage(story, cid)["prepaid"]
    assert (shown["balance"], shown["drawn"], shown["undrawn"]) == ("0.00", "0.00", "2380.00")
    for token in ("tok-provider", "tok-customer"):
        alerts = client.get(f"/v1/alerts?contract={cid}", headers=auth(token)).json()["alerts"]
        assert [a["kind"] for a in alerts] == ["prepaid_top_up_returned"]
    again = story.send(camt([E("TOPUP-R-RET", "3000.00", credit=False, reversal=True, reason="AM04",
                               e2e="E2E-TOPUP-R", rf=reference)], msg_id="S-R2")).json()
    assert again["duplicates"] == 1 and again["reversed"] == []
    closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator")).json()
    assert (closed["status"], closed["paid"]) == ("ISSUED", "0.00")


@pytest.mark.parametrize(("terms", "field"), [
    ({"prepaid": {"low_balance": "1.001"}}, "prepaid.low_balance"),
    ({"prepaid": {"low_balance": "10", "top_up_amount": "-5"}}, "prepaid.top_up_amount"),
    ({"billing_threshold": "abc"}, "billing_threshold"),
])
def test_bad_money_terms_are_refused_at_proposal_and_nothing_is_stored(story: Story, terms: dict,
                                                                        field: str) -> None:
    from tests.helpers.chaincode import sample_asset, sample_contract

    client = story.client
    key = make_device_key("bad-terms")
    client.post("/v1/assets", json=sample_asset(key, "mri-bad-terms"), headers=auth("tok-provider"))
    body = sample_contract(id="ctr-bad-terms", assets=["mri-bad-terms"], start=START, **terms)
    r = client.post("/v1/contracts", json=body, headers=auth("tok-provider"))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_terms"), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/contracts/ctr-bad-terms", headers=auth("tok-provider")).status_code == 404
