"""Prepaid drawdown and progressive billing over the API, on both ledgers (ADR 0051).

- A prepaid contract funded by a bank credit: each usage batch draws the balance down in the usage
  transaction itself (both orgs endorse it: the balance key needs both), the invoice is issued SETTLED at
  issue, and the balance history matches the readings to the cent.
- Progressive billing: the money job issues interim invoices as the cost to date crosses the threshold (each
  one becomes outbox rows like any invoice); the final invoice bills the rest and names them; interim plus
  final totals equal the single invoice the same usage gives without a threshold, to the cent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from chaincode import creditor_ref
from hub.bank.mandate_router import money_jobs
from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.camt import E, camt
from tests.helpers.chaincode import CUSTOMER, PROVIDER, reading
from tests.helpers.story import Story, open_contract

pytestmark = pytest.mark.integration
PERIOD, START = last_month()
XML = {"Content-Type": "application/xml"}


def cost(scans: int) -> Decimal:
    """The sample plan by hand: platform 500 + 85 a scan (first 100), at least 2000, plus 19 % VAT."""
    subtotal = max(Decimal(500) + Decimal(85) * scans, Decimal(2000))
    return (subtotal * Decimal("1.19")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _send(client, story: Story, key, device: str, n: int, scans: int) -> None:
    readings = [reading(story.id(f"b{n}-{i}"), "scan", "1", ts(PERIOD, 2 + n, 9, i)) for i in range(scans)]
    sent = post_usage(client, usage(key, story.id(f"m-{n}"), readings, device_id=device))
    assert sent.status_code == 202, sent.text


def test_prepaid_drawn_per_batch_and_settled_at_issue(story: Story) -> None:
    with story.hub() as client:
        contract, (key,) = open_contract(client, story, start=START, name="ctr-draw")
        cid, device = contract["id"], contract["assets"][0]
        reference = creditor_ref.for_top_up(cid)
        funded = client.post("/v1/bank-statements", headers={**auth("tok-operator"), **XML}, content=camt(
            [E(story.id("TOP"), "5000.00", rf=reference)], msg_id=story.id("S-TOP"))).json()
        assert [r["balance"] for r in funded["recorded"]] == ["5000.00"]
        batches = [4, 20, 2]
        for n, scans in enumerate(batches, start=1):
            _send(client, story, key, device, n, scans)
            shown = client.get(f"/v1/contracts/{cid}/usage", params={"period": PERIOD},
                               headers=auth("tok-customer")).json()["prepaid"]
            done = sum(batches[:n])
            assert (Decimal(shown["drawn"]), Decimal(shown["balance"])) == (cost(done), 5000 - cost(done))
        draws = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-auditor")).json()["draws"]
        to_date = [cost(4), cost(24), cost(26)]
        assert [Decimal(d["cost_to_date"]) for d in draws] == to_date  # the readings, to the cent
        assert [Decimal(d["balance"]) for d in draws] == [5000 - c for c in to_date]
        assert [d["readings_to_date"] for d in draws] == [4, 24, 26]
        for draw in draws:  # each draw is in a usage transaction both orgs endorsed
            tx = story.ledger.tx(draw["tx_id"])
            assert tx.status == "VALID" and {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        invoice = closed.json()
        assert (invoice["status"], invoice["settled_by"], Decimal(invoice["paid"])) == (
            "SETTLED", "prepaid", cost(26))
        after = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-provider")).json()
        assert Decimal(after["balance"]) == 5000 - cost(26)


def test_progressive_interim_and_final_invoices_add_up_to_the_single_invoice(story: Story) -> None:
    with story.hub() as client:
        contract, (key,) = open_contract(client, story, start=START, name="ctr-prog",
                                         billing_threshold="3000.00")
        cid, device = contract["id"], contract["assets"][0]
        jobs = money_jobs(client.app.state.services)
        interims: list[str] = []
        for n, scans in enumerate([10, 30, 5, 40, 3], start=1):
            _send(client, story, key, device, n, scans)
            interims += jobs.run_once()["interims"]
        assert len(interims) >= 2
        assert jobs.run_once()["interims"] == []  # nothing due twice
        billing = client.get(f"/v1/contracts/{cid}/usage", params={"period": PERIOD},
                             headers=auth("tok-customer")).json()["billing"]
        assert billing["interim_invoices"] == interims and billing["threshold"] == "3000.00"
        # delivered like any invoice: the delivery consumer makes outbox rows for each
        delivery = client.app.state.services.delivery
        delivery.consume_events()
        for invoice_id in interims:
            assert delivery.list(invoice_id=invoice_id), invoice_id
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        final = closed.json()
        assert final["interim_invoices"] == interims
        shown = [client.get(f"/v1/invoices/{i}", headers=auth("tok-customer")).json() for i in interims]
        assert [i["kind"] for i in shown] == ["interim"] * len(interims)
        single = cost(88)  # the same 88 scans invoiced once
        assert sum(Decimal(i["total"]) for i in shown) + Decimal(final["total"]) == single
        assert Decimal(final["period_total"]["total"]) == single
        assert Decimal(final["deducted"]["total"]) == sum(Decimal(i["total"]) for i in shown)


def test_low_balance_top_up_collection_return_and_refund_at_contract_end(story: Story) -> None:
    """The money job on either ledger: a balance that falls below the contract's low mark alerts both
    parties once and writes one pain.008 top-up collection; a returned top-up is taken back; the unused
    balance of the ended contract is refunded by a credit note, once."""
    import datetime as dt

    from lxml import etree

    from hub.bank.sepa import schema_path
    from tests.helpers.erp import PARTIES

    end = (dt.date.fromisoformat(START).replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    provider = {**PARTIES[PROVIDER], "erp_ids": {**PARTIES[PROVIDER].get("erp_ids", {}),
                                                  "iban": "DE89370400440532013000",
                                                  "sepa_creditor_id": "DE98ZZZ09999999999"}}
    with story.hub(parties={**PARTIES, PROVIDER: provider}) as client:
        contract, (key,) = open_contract(client, story, start=START, name="ctr-low",
                                         end=(end - dt.timedelta(days=1)).isoformat(),
                                         prepaid={"low_balance": "1000.00", "top_up_amount": "2500.00"})
        cid, device = contract["id"], contract["assets"][0]
        mandate = {"debtor_org": CUSTOMER, "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
                   "mandate_id": story.id("MNDT")[:35], "signed_on": START, "scheme": "CORE"}
        assert client.put(f"/v1/contracts/{cid}/mandate", json=mandate,
                          headers=auth("tok-provider")).status_code == 200
        reference = creditor_ref.for_top_up(cid)
        headers = {**auth("tok-operator"), **XML}

        def bank(entry: E, name: str) -> dict:
            r = client.post("/v1/bank-statements", headers=headers,
                            content=camt([entry], msg_id=story.id(name)))
            assert r.status_code == 200, r.text
            return r.json()

        bank(E(story.id("T1"), "3000.00", rf=reference, e2e=story.id("E2E-T1")), "S1")
        _send(client, story, key, device, 1, 4)  # draws 2380.00: 620.00 left, below 1000.00
        jobs = money_jobs(client.app.state.services)
        ran = jobs.run_once()
        assert len(ran["alerts"]) == 2 and len(ran["top_ups"]) == 1
        assert jobs.run_once() == {"interims": [], "alerts": [], "top_ups": [], "refunds": []}
        (path,) = list(jobs.directory.glob("topup-*.pain008.xml"))
        assert etree.XMLSchema(etree.parse(str(schema_path()))).validate(etree.parse(str(path)))
        assert reference in path.read_text()
        # the collection is credited, then a second transfer comes back (AM04)
        bank(E(story.id("T2"), "2500.00", rf=reference, e2e=reference), "S2")
        bank(E(story.id("T3"), "400.00", rf=reference, e2e=story.id("E2E-T3")), "S3")
        back = bank(E(story.id("T3-R"), "400.00", credit=False, reversal=True, reason="AM04",
                      e2e=story.id("E2E-T3"), rf=reference), "S4")
        assert [(r["top_up"], r["balance"]) for r in back["reversed"]] == [(cid, "3120.00")]
        closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
        assert closed.status_code == 200, closed.text
        assert closed.json()["status"] == "SETTLED"
        refunds = jobs.run_once()["refunds"]
        assert len(refunds) == 1 and jobs.run_once()["refunds"] == []
        note = client.get(f"/v1/invoices/{refunds[0]}", headers=auth("tok-customer")).json()
        assert (note["type"], note["total"]) == ("credit_note", "3120.00")
        left = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-auditor")).json()
        assert left["balance"] == "0.00"
        assert [m["kind"] for m in left["movements"]] == ["top_up", "top_up", "top_up", "top_up_reversal",
                                                          "refund"]
