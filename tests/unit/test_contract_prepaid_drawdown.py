"""Prepaid drawdown per committed usage batch (ADR 0051), on the chaincode with the in-memory stub: each
batch draws the balance down to the period's cost to date, never below zero, never twice; the period's
invoice is paid by what was drawn; a low balance is flagged once per crossing; a returned top-up is
reversed; the unused balance of an ended contract is refunded by a credit note."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chaincode import keys
from chaincode.tx import running
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    example_usage,
    make_device_key,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
PERIOD = "2026-11"
INV = f"inv-{CONTRACT_ID}-{PERIOD}"
TOTAL = Decimal("13655.25")  # the example usage's invoice (tests/helpers/chaincode.example_usage)


def _ledger(**terms: object) -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, **terms)
    return ledger


def _top_up(ledger: ChaincodeLedger, top_up_id: str, amount: str, org: str = CUSTOMER) -> dict:
    body = {"contract_id": CONTRACT_ID, "top_up_id": top_up_id, "amount": amount}
    return ledger.submit("TopUpPrepaid", body, org=org)


def _cost(ledger: ChaincodeLedger) -> Decimal:
    """The cost to date as `GetUsage` computes it from every batch key (independent of the running record)."""
    usage = ledger.evaluate("GetUsage", {"contract_id": CONTRACT_ID, "period": PERIOD})
    return Decimal(usage["cost"]["total"])


def _prepaid(ledger: ChaincodeLedger) -> dict:
    return ledger.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})


def test_every_batch_draws_the_cost_to_date_and_the_invoice_is_settled_at_issue() -> None:
    ledger = _ledger()
    _top_up(ledger, "t-1", "20000.00")
    messages = example_usage(KEY, messages=5)
    history = []
    for message in messages:
        ledger.submit("RecordUsage", {"messages": [message]})
        cost = _cost(ledger)
        prepaid = _prepaid(ledger)
        assert Decimal(prepaid["balance"]) == Decimal("20000.00") - cost  # to the cent, after every batch
        history.append(cost)
    draws = _prepaid(ledger)["draws"]
    assert len(draws) == 5
    assert [Decimal(d["cost_to_date"]) for d in draws] == history
    assert [Decimal(d["drawn_to_date"]) for d in draws] == history
    assert sum(Decimal(d["amount"]) for d in draws) == TOTAL
    assert [Decimal(d["balance"]) for d in draws] == [Decimal("20000.00") - c for c in history]
    # a resent message is a duplicate: no batch, no second draw
    ledger.submit("RecordUsage", {"messages": [messages[0]]})
    assert len(_prepaid(ledger)["draws"]) == 5
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert (invoice["status"], invoice["settled_by"]) == ("SETTLED", "prepaid")
    assert Decimal(invoice["paid"]) == TOTAL
    after = _prepaid(ledger)
    assert Decimal(after["balance"]) == Decimal("20000.00") - TOTAL
    assert [m["kind"] for m in after["movements"]] == ["top_up"]  # the draws were per batch, not at close
    assert ledger.state(running.key(CONTRACT_ID, PERIOD))["closed_by"] == INV


def test_the_balance_runs_out_mid_period_and_the_invoice_settles_what_was_drawn() -> None:
    ledger = _ledger()
    _top_up(ledger, "t-1", "5000.00")
    for message in example_usage(KEY, messages=4):
        ledger.submit("RecordUsage", {"messages": [message]})
        assert Decimal(_prepaid(ledger)["balance"]) >= 0
    draws = _prepaid(ledger)["draws"]
    assert Decimal(draws[-1]["drawn_to_date"]) == Decimal("5000.00") and draws[-1]["balance"] == "0.00"
    assert sum(Decimal(d["amount"]) for d in draws) == Decimal("5000.00")
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert (invoice["status"], invoice["paid"]) == ("ISSUED", "5000.00")
    assert [p["payment_id"] for p in invoice["payments"]] == [f"prepaid:{INV}"]
    # posted in the ERP it is partly paid; the rest comes as any payment does
    posted = ledger.submit("RecordErpPosting", {"invoice_id": INV, "target": "provider", "system": "sap-soap",
                                                "document_id": "1", "delivery_id": "dl-1"})
    assert posted["status"] == "PARTIALLY_PAID"
    rest = str(TOTAL - Decimal("5000.00"))
    paid = ledger.submit("RecordPayment", {"invoice_id": INV, "payment_id": "bank-1", "amount": rest})
    assert paid["status"] == "SETTLED"


def test_a_top_up_after_the_usage_is_drawn_by_the_next_batch_or_at_close() -> None:
    ledger = _ledger()
    _top_up(ledger, "t-1", "100.00")
    first, second = example_usage(KEY, messages=2)
    ledger.submit("RecordUsage", {"messages": [first]})
    assert _prepaid(ledger)["balance"] == "0.00"
    _top_up(ledger, "t-2", "20000.00")
    ledger.submit("RecordUsage", {"messages": [second]})
    assert Decimal(_prepaid(ledger)["balance"]) == Decimal("20100.00") - TOTAL
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert invoice["status"] == "SETTLED"


def test_usage_before_the_first_top_up_is_counted_once_funded() -> None:
    ledger = _ledger()
    first, second = example_usage(KEY, messages=2)
    ledger.submit("RecordUsage", {"messages": [first]})  # no balance yet: nothing drawn, no running record
    assert ledger.state(running.key(CONTRACT_ID, PERIOD)) is None
    _top_up(ledger, "t-1", "20000.00")
    ledger.submit("RecordUsage", {"messages": [second]})
    (draw,) = _prepaid(ledger)["draws"]
    assert Decimal(draw["amount"]) == TOTAL  # the first batch's cost too, once
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert invoice["status"] == "SETTLED"
    assert Decimal(_prepaid(ledger)["balance"]) == Decimal("20000.00") - TOTAL


def test_low_balance_is_flagged_once_per_crossing_and_cleared_by_a_top_up() -> None:
    ledger = _ledger(prepaid={"low_balance": "8000.00", "top_up_amount": "10000.00"})
    _top_up(ledger, "t-1", "15000.00")
    messages = example_usage(KEY, messages=5)
    flags = []
    for message in messages[:4]:
        ledger.submit("RecordUsage", {"messages": [message]})
        flags.append((_prepaid(ledger).get("low") or {}).get("id"))
    crossed = [f for f in flags if f]
    assert crossed and len(set(crossed)) == 1  # one crossing, one id, kept while the balance stays low
    assert flags.index(crossed[0]) > 0
    _top_up(ledger, "t-2", "10000.00")
    assert "low" not in _prepaid(ledger)


def test_a_returned_top_up_takes_back_the_balance_and_the_open_periods_draws() -> None:
    ledger = _ledger()
    _top_up(ledger, "t-1", "3000.00")
    _top_up(ledger, "t-2", "500.00")
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=1)})
    assert _prepaid(ledger)["balance"] == "0.00"
    reversed_ = ledger.submit("ReverseTopUp", {"contract_id": CONTRACT_ID, "top_up_id": "t-1",
                                               "reversal_id": "bank:R1", "reason": "AM04"}, org=PROVIDER)
    (movement,) = [m for m in reversed_["movements"] if m["kind"] == "top_up_reversal"]
    assert (movement["from_balance"], movement["from_open_periods"], movement["unrecovered"]) == (
        "0.00", "3000.00", "0.00")
    assert ledger.state(running.key(CONTRACT_ID, PERIOD))["drawn"] == "500.00"
    ledger.noop("ReverseTopUp", {"contract_id": CONTRACT_ID, "top_up_id": "t-1", "reversal_id": "bank:R1",
                                 "reason": "AM04"})
    ledger.refuse("ReverseTopUp", {"contract_id": CONTRACT_ID, "top_up_id": "t-1", "reversal_id": "bank:R2",
                                   "reason": "AM04"}, "payment_already_reversed")
    ledger.refuse("ReverseTopUp", {"contract_id": CONTRACT_ID, "top_up_id": "nope", "reversal_id": "bank:R3",
                                   "reason": "AM04"}, "unknown_top_up")
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert invoice["paid"] == "500.00"  # only what the balance still holds paid the invoice


def test_unused_balance_of_an_ended_contract_is_refunded_by_a_credit_note() -> None:
    ledger = _ledger(end="2026-11-30")
    _top_up(ledger, "t-1", "20000.00")
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=2)})
    ledger.refuse("RefundPrepaid", {"contract_id": CONTRACT_ID}, "contract_not_ended")
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    ledger.refuse("RefundPrepaid", {"contract_id": CONTRACT_ID}, "forbidden", org=CUSTOMER)
    note = ledger.submit("RefundPrepaid", {"contract_id": CONTRACT_ID})
    left = Decimal("20000.00") - TOTAL
    assert (note["type"], Decimal(note["total"]), note["credit_for"]) == ("credit_note", left, INV)
    assert Decimal(note["subtotal"]) + Decimal(note["tax"]) == left
    assert ledger.last_event()[0] == "CreditNoteIssued"
    assert _prepaid(ledger)["balance"] == "0.00"
    assert ledger.noop("RefundPrepaid", {"contract_id": CONTRACT_ID}) == note
    ledger.refuse("RefundPrepaid", {"contract_id": "ctr-none"}, "unknown_contract")


@pytest.mark.parametrize(("terms", "field"), [
    ({"prepaid": {"low_balance": "-1"}}, "prepaid.low_balance"),
    ({"prepaid": {"low_balance": "1.001"}}, "prepaid.low_balance"),
    ({"prepaid": {"top_up_amount": "5"}}, "prepaid.low_balance"),
    ({"prepaid": {"low_balance": "5", "extra": 1}}, "prepaid"),
    ({"prepaid": "5"}, "prepaid"),
    ({"billing_threshold": "0"}, "billing_threshold"),
    ({"billing_threshold": 100}, "billing_threshold"),
    ({"billing_threshold": "1e3"}, "billing_threshold"),
])
def test_malformed_money_terms_refuse_the_proposal(terms: dict, field: str) -> None:
    from tests.helpers.chaincode import sample_asset, sample_contract

    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(KEY), org=PROVIDER)
    err = ledger.refuse("ProposeContract", sample_contract(**terms), "invalid_terms", org=PROVIDER)
    assert err.details["field"] == field
    assert ledger.state(keys.contract(CONTRACT_ID)) is None


def test_an_ended_contract_without_a_balance_has_nothing_to_refund() -> None:
    ledger = _ledger(end="2026-11-30")
    _top_up(ledger, "t-1", "100.00")
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=1)})
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    assert _prepaid(ledger)["balance"] == "0.00"
    ledger.refuse("RefundPrepaid", {"contract_id": CONTRACT_ID}, "nothing_to_refund")


def test_a_negative_balance_is_never_written() -> None:
    """The guard under every balance write: no caller computes one, and a bug would be refused whole."""
    from chaincode.errors import ChaincodeError
    from chaincode.stub import InMemoryStub
    from chaincode.tx import prepaid
    from chaincode.tx.common import Tx

    ledger = _ledger()
    _top_up(ledger, "t-1", "10.00")
    stub = InMemoryStub(ledger.world, tx_id="f" * 64, timestamp=ledger.now, creator_msp_id=PROVIDER)
    tx = Tx(stub)
    contract = tx.contract(CONTRACT_ID)
    with pytest.raises(ChaincodeError) as info:
        prepaid.write_balance(tx, contract, tx.get(prepaid.key(CONTRACT_ID)), Decimal("-0.01"))
    assert info.value.code == "prepaid_negative" and stub.writes == []
