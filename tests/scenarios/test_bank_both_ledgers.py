"""Money from the bank, on both ledgers: a month of usage, the invoice, camt.054 and camt.053 credits quoting
its RF reference recorded with RecordPayment (PARTIALLY_PAID, then SETTLED), the same statement again
records nothing, and a returned direct debit reopens the invoice and raises `payment_returned`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chaincode import creditor_ref
from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.camt import E, camt
from tests.helpers.chaincode import CUSTOMER, PROVIDER, reading
from tests.helpers.story import Story, open_contract

pytestmark = pytest.mark.integration
PERIOD, START = last_month()
XML = {"Content-Type": "application/xml"}


def test_bank_statements_settle_and_a_return_reopens(story: Story) -> None:
    with story.hub() as client:
        contract, (key,) = open_contract(client, story, start=START)
        device = contract["assets"][0]
        readings = [reading(story.id(f"r-{i}"), "scan", "1", ts(PERIOD, 1 + i)) for i in range(10)]
        sent = post_usage(client, usage(key, story.id("m-1"), readings, device_id=device))
        assert sent.status_code == 202, sent.text
        closed = client.post(f"/v1/contracts/{contract['id']}/periods/{PERIOD}/close",
                             headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice_id = closed.json()["id"]
        story.ledger.submit("RecordErpPosting", [json.dumps(
            {"invoice_id": invoice_id, "target": "provider", "system": "sap-soap", "document_id": "51000001",
             "delivery_id": story.id("dl")})], as_org=PROVIDER)

        def get() -> dict:
            r = client.get(f"/v1/invoices/{invoice_id}", headers=auth("tok-customer"))
            assert r.status_code == 200, r.text
            return r.json()

        issued = get()
        rf, total = issued["payment_reference"], Decimal(issued["total"])
        assert issued["status"] == "POSTED" and rf.startswith("RF")

        def send(data: bytes) -> dict:
            r = client.post("/v1/bank-statements", content=data, headers={**auth("tok-operator"), **XML})
            assert r.status_code == 200, r.text
            return r.json()

        # a first credit by camt.054 notification, then the rest on the day's camt.053 statement
        part = send(camt([E(story.id("BK-1"), "1000.00", rf=rf, e2e=story.id("E2E-1"))], kind="054",
                         msg_id=story.id("N-1")))
        assert [r["status"] for r in part["recorded"]] == ["PARTIALLY_PAID"]
        statement = camt([E(story.id("BK-2"), f"{total - Decimal('1000.00'):.2f}", rf=rf,
                            e2e=story.id("E2E-2"))], kind="053", msg_id=story.id("S-1"))
        assert [r["status"] for r in send(statement)["recorded"]] == ["SETTLED"]
        settled = get()
        assert (settled["status"], Decimal(settled["paid"])) == ("SETTLED", total)
        assert len(settled["payments"]) == 2
        # both payments are ledger transactions the provider's and the customer's peers endorsed
        for payment in settled["payments"]:
            tx = story.ledger.tx(payment["tx_id"])
            assert tx.status == "VALID"
            assert {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}
        # the same statement again records nothing
        again = send(statement)
        assert (again["duplicates"], again["recorded"]) == (1, [])
        assert get() == settled
        # the second payment was a direct debit; it comes back (AM04): the invoice is open again
        back = send(camt([E(story.id("BK-2-R"), f"{total - Decimal('1000.00'):.2f}", credit=False,
                            reversal=True, reason="AM04", rf=rf, e2e=story.id("E2E-2"))],
                         kind="054", msg_id=story.id("N-2")))
        assert [(r["invoice_id"], r["status"]) for r in back["reversed"]] == [(invoice_id, "PARTIALLY_PAID")]
        reopened = get()
        assert (reopened["status"], reopened["paid"]) == ("PARTIALLY_PAID", "1000.00")
        alerts = client.get(f"/v1/alerts?contract={contract['id']}", headers=auth("tok-customer")).json()
        assert [a["kind"] for a in alerts["alerts"]] == ["payment_returned"]


def test_a_month_by_sepa_direct_debit(story: Story) -> None:
    """Usage, invoice, pain.008 produced once, camt.054 credit imported -> SETTLED, the same statement again
    records nothing, the return (camt.054 reversal, MD06) reopens it and raises payment_returned."""
    from lxml import etree

    from hub.bank.mandate_router import collector
    from hub.bank.sepa import schema_path
    from tests.helpers.erp import PARTIES

    provider = {**PARTIES[PROVIDER], "erp_ids": {**PARTIES[PROVIDER].get("erp_ids", {}),
                                                  "iban": "DE89370400440532013000",
                                                  "sepa_creditor_id": "DE98ZZZ09999999999"}}
    with story.hub(parties={**PARTIES, PROVIDER: provider}) as client:
        contract, (key,) = open_contract(client, story, start=START)
        cid = contract["id"]
        readings = [reading(story.id(f"d-{i}"), "scan", "1", ts(PERIOD, 2 + i)) for i in range(5)]
        assert post_usage(client, usage(key, story.id("dm-1"), readings,
                                        device_id=contract["assets"][0])).status_code == 202
        mandate = {"debtor_org": CUSTOMER, "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
                   "mandate_id": story.id("MNDT")[:35], "signed_on": START, "scheme": "CORE"}
        put = client.put(f"/v1/contracts/{cid}/mandate", json=mandate, headers=auth("tok-provider"))
        assert put.status_code == 200, put.text
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice = closed.json()
        sepa = collector(client.app.state.services)
        written = sepa.run_once()
        assert invoice["id"] in written and sepa.run_once() == []
        pain = etree.parse(str(sepa.directory / f"{invoice['id']}.pain008.xml"))
        assert etree.XMLSchema(etree.parse(str(schema_path()))).validate(pain)
        rf = creditor_ref.for_invoice(invoice["id"])
        assert rf in etree.tostring(pain).decode()
        story.ledger.submit("RecordErpPosting", [json.dumps(
            {"invoice_id": invoice["id"], "target": "provider", "system": "sap-soap", "document_id": "5100",
             "delivery_id": story.id("dl-dd")})], as_org=PROVIDER)
        credit = camt([E(story.id("SDD"), invoice["total"], rf=rf, e2e=rf)], msg_id=story.id("N-DD"))
        headers = {**auth("tok-operator"), **XML}
        first = client.post("/v1/bank-statements", content=credit, headers=headers).json()
        assert [r["status"] for r in first["recorded"]] == ["SETTLED"]
        again = client.post("/v1/bank-statements", content=credit, headers=headers).json()
        assert (again["duplicates"], again["recorded"]) == (1, [])
        back = client.post("/v1/bank-statements", headers=headers, content=camt(
            [E(story.id("SDD-R"), invoice["total"], credit=False, reversal=True, reason="MD06", e2e=rf)],
            msg_id=story.id("N-DD-R"))).json()
        assert [(r["invoice_id"], r["status"]) for r in back["reversed"]] == [(invoice["id"], "POSTED")]
        got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth("tok-customer")).json()
        assert (got["status"], got["paid"]) == ("POSTED", "0.00")


def test_prepaid_balance_settles_the_invoice_at_issue(story: Story) -> None:
    with story.hub() as client:
        contract, (key,) = open_contract(client, story, start=START, name="ctr-pre")
        cid = contract["id"]
        readings = [reading(story.id(f"p-{i}"), "scan", "1", ts(PERIOD, 3 + i)) for i in range(3)]
        assert post_usage(client, usage(key, story.id("pm-1"), readings,
                                        device_id=contract["assets"][0])).status_code == 202
        reference = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-customer")).json()[
            "top_up_reference"]
        funded = client.post("/v1/bank-statements", headers={**auth("tok-operator"), **XML}, content=camt(
            [E(story.id("TOP"), "3000.00", rf=reference)], msg_id=story.id("S-TOP"))).json()
        assert [r["balance"] for r in funded["recorded"]] == ["3000.00"]
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice = closed.json()
        assert (invoice["status"], invoice["paid"]) == ("SETTLED", invoice["total"])
        after = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-auditor")).json()
        assert Decimal(after["balance"]) + Decimal(invoice["total"]) == Decimal("3000.00")
        tx = story.ledger.tx(invoice["tx_id"])  # issued and settled in one transaction both orgs endorsed
        assert tx.status == "VALID" and {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}
