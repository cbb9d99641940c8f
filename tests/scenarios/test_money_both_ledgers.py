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
from tests.helpers.story import Story, open_contract, story_fixture  # noqa: F401

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
