"""Prepaid balance on the embedded ledger: funded by a bank credit quoting the contract's top-up reference
and by an operator entry with evidence; the invoice issued while the balance covers it is SETTLED at issue,
the balance history matches the invoice to the cent, and the funding statement imported again adds nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chaincode import creditor_ref
from tests.helpers.api import auth, last_month, post_usage, setup_contract, ts, usage
from tests.helpers.bank import Story
from tests.helpers.camt import E, camt
from tests.helpers.chaincode import make_device_key, reading

pytestmark = pytest.mark.integration


def test_prepaid_contract_is_settled_at_issue(story: Story) -> None:
    client = story.client
    key = make_device_key("prepaid")
    contract = setup_contract(client, key, id="ctr-prepaid", assets=["mri-prepaid"])
    cid = contract["id"]
    period, _ = last_month()
    sent = post_usage(client, usage(key, "pm-1", [reading("r-1", "scan", "4", ts(period, 5))],
                                    device_id="mri-prepaid"))
    assert sent.status_code == 202, sent.text
    prepaid = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-customer"))
    assert prepaid.status_code == 200, prepaid.text
    reference = prepaid.json()["top_up_reference"]
    assert prepaid.json()["balance"] == "0.00" and reference == creditor_ref.for_top_up(cid)
    # the customer funds it by bank transfer quoting the top-up reference ...
    statement = camt([E("TOPUP-1", "2000.00", rf=reference)], msg_id="S-TOPUP")
    funded = story.send(statement).json()
    assert [(r["top_up"], r["balance"]) for r in funded["recorded"]] == [(cid, "2000.00")]
    assert story.send(statement).json()["duplicates"] == 1  # imported twice: funded once
    # ... and the operator records a cheque, with evidence
    cheque = client.post(f"/v1/contracts/{cid}/prepaid/top-ups", headers=auth("tok-operator"),
                         json={"top_up_id": "chq-77", "amount": "500.00",
                               "evidence": "cheque 77, 2026-12-01"})
    assert cheque.status_code == 200, cheque.text
    assert cheque.json()["balance"] == "2500.00"
    refused = client.post(f"/v1/contracts/{cid}/prepaid/top-ups", headers=auth("tok-provider"),
                          json={"top_up_id": "x", "amount": "1.00", "evidence": "x"})
    assert refused.status_code == 403
    bad = client.post(f"/v1/contracts/{cid}/prepaid/top-ups", headers=auth("tok-operator"),
                      json={"top_up_id": "chq-78", "amount": "1.001", "evidence": "x"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_argument")
    # the usage view shows the balance against the cost to date, which the close will draw
    shown = client.get(f"/v1/contracts/{cid}/usage", params={"period": period}, headers=auth("tok-customer"))
    assert shown.status_code == 200, shown.text
    cost = Decimal(shown.json()["cost"]["total"])
    assert shown.json()["prepaid"] == {"balance": "2500.00", "cost_to_date": str(cost), "drawn": "0",
                                       "undrawn": str(cost), "available": str(Decimal("2500.00") - cost),
                                       "covers_cost_to_date": "true"}  # usage came before the funding
    # the period closes: the balance covers the invoice, which is issued SETTLED (DSO zero)
    closed = client.post(f"/v1/contracts/{cid}/periods/{period}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    invoice = closed.json()
    assert (invoice["status"], invoice["settled_by"]) == ("SETTLED", "prepaid")
    assert invoice["paid"] == invoice["total"]
    after = client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-provider")).json()
    assert Decimal(after["balance"]) == Decimal("2500.00") - Decimal(invoice["total"])
    assert [(m["kind"], m["amount"]) for m in after["movements"]] == [
        ("top_up", "2000.00"), ("top_up", "500.00"), ("draw", invoice["total"])]
    # the auditor reads it too; another org does not
    assert client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-auditor")).status_code == 200
    assert client.get(f"/v1/contracts/{cid}/prepaid", headers=auth("tok-other-customer")).status_code == 404
