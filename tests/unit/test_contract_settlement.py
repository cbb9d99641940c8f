"""The invoice state machine: postings, payments, disputes, credit notes."""

from __future__ import annotations

import datetime as dt

import pytest

from chaincode import keys
from tests.helpers.chaincode import (
    AUDITOR,
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
INV = f"inv-{CONTRACT_ID}-2026-11"
LATER = NOV_END + dt.timedelta(days=2)
TOTAL = "13655.25"


@pytest.fixture
def ledger(ledger: ChaincodeLedger) -> ChaincodeLedger:
    """The conftest's ACTIVE contract (usage signed with KEY) with the example usage billed for November."""
    ledger.submit("RecordUsage", {"messages": example_usage(KEY)})
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, at=NOV_END)
    ledger.now = LATER
    return ledger


def posting(target: str = "provider", document_id: str = "SAP-4711", system: str = "sap-soap") -> dict:
    return {
        "invoice_id": INV,
        "target": target,
        "system": system,
        "document_id": document_id,
        "delivery_id": f"dl-{target}",
    }


def payment(payment_id: str = "pay-1", amount: str = TOTAL, **extra: str) -> dict:
    return {"invoice_id": INV, "payment_id": payment_id, "amount": amount, **extra}


def _status(ledger: ChaincodeLedger, invoice_id: str = INV) -> str:
    return ledger.state(keys.invoice(invoice_id))["status"]


def test_first_posting_moves_issued_to_posted(ledger: ChaincodeLedger) -> None:
    out = ledger.submit("RecordErpPosting", posting())
    tx_id = ledger.last_stub.tx_id
    assert out["status"] == "POSTED"
    assert out["erp_refs"] == [
        {
            "target": "provider",
            "system": "sap-soap",
            "document_id": "SAP-4711",
            "delivery_id": "dl-provider",
            "tx_id": tx_id,
            "at": "2026-12-02T23:00:00Z",
        }
    ]
    assert out["history"][-1] == {"status": "POSTED", "tx_id": tx_id, "at": "2026-12-02T23:00:00Z"}
    assert ledger.last_event() == (
        "InvoicePosted",
        {"invoice_id": INV, "target": "provider", "system": "sap-soap", "document_id": "SAP-4711"},
    )
    second = ledger.submit("RecordErpPosting", posting("customer", "AP-1", "oracle-rest"), org=CUSTOMER)
    assert second["status"] == "POSTED"
    assert len(second["erp_refs"]) == 2
    assert len(second["history"]) == 2  # no second POSTED entry


def test_same_posting_again_is_a_no_op(ledger: ChaincodeLedger) -> None:
    first = ledger.submit("RecordErpPosting", posting())
    assert ledger.noop("RecordErpPosting", {**posting(), "delivery_id": "retry"}) == first


def test_other_document_for_the_same_target_is_posting_conflict(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    err = ledger.refuse("RecordErpPosting", posting(document_id="SAP-9999"), "posting_conflict")
    assert err.details["existing"]["document_id"] == "SAP-4711"


@pytest.mark.parametrize(
    "change",
    [{"target": "auditor"}, {"target": None}, {"system": ""}, {"document_id": 5}, {"delivery_id": None}],
)
def test_malformed_posting_is_invalid_argument(ledger: ChaincodeLedger, change: dict) -> None:
    ledger.refuse("RecordErpPosting", {**posting(), **change}, "invalid_argument")


def test_posting_refusals(ledger: ChaincodeLedger) -> None:
    ledger.refuse("RecordErpPosting", posting(), "forbidden", org=AUDITOR)
    ledger.refuse("RecordErpPosting", {**posting(), "invoice_id": "inv-nope"}, "unknown_invoice")


def test_payments_settle_the_invoice(ledger: ChaincodeLedger) -> None:
    ledger.refuse("RecordPayment", payment(), "invalid_state_transition")  # not posted yet
    ledger.submit("RecordErpPosting", posting())
    part = ledger.submit(
        "RecordPayment", payment("pay-1", "13000.25", paid_at="2026-12-10T10:00:00Z", source="sap")
    )
    assert (part["status"], part["paid"]) == ("PARTIALLY_PAID", "13000.25")
    assert part["payments"] == [
        {
            "payment_id": "pay-1",
            "amount": "13000.25",
            "paid_at": "2026-12-10T10:00:00Z",
            "source": "sap",
            "tx_id": ledger.last_stub.tx_id,
        }
    ]
    assert ledger.last_event() == (
        "PaymentRecorded",
        {"invoice_id": INV, "payment_id": "pay-1", "amount": "13000.25", "status": "PARTIALLY_PAID"},
    )
    ledger.refuse("RecordPayment", payment("pay-2", "655.01"), "overpayment")
    done = ledger.submit("RecordPayment", payment("pay-2", "655"), org=CUSTOMER)
    assert (done["status"], done["paid"]) == ("SETTLED", TOTAL)
    assert [h["status"] for h in done["history"]] == ["ISSUED", "POSTED", "PARTIALLY_PAID", "SETTLED"]
    # replays of recorded payments are no-ops even after settlement; anything new is refused
    assert ledger.noop("RecordPayment", payment("pay-1", "13000.25")) == done
    ledger.refuse("RecordPayment", payment("pay-3", "1.00"), "invalid_state_transition")
    ledger.refuse("RecordErpPosting", posting("customer", "AP-1"), "invalid_state_transition")
    ledger.refuse("Dispute", {"invoice_id": INV, "reason": "late"}, "invalid_state_transition", org=CUSTOMER)
    # a settled invoice is never rewritten
    assert ledger.state(keys.invoice(INV)) == done


def test_payment_id_reused_with_another_amount_is_payment_conflict(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.submit("RecordPayment", payment("pay-1", "100.00"))
    ledger.refuse("RecordPayment", payment("pay-1", "200.00"), "payment_conflict")
    # the same amount spelled differently is the same payment
    ledger.noop("RecordPayment", payment("pay-1", "100"))


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-1.00", "1.001", "1e2", 100, "", None, "abc", "12345678901234567", "١٢", "1.00\n"],
)
def test_bad_payment_amount_is_invalid_argument(ledger: ChaincodeLedger, amount: object) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.refuse("RecordPayment", payment(amount=amount), "invalid_argument")  # type: ignore[arg-type]


def test_payment_refusals(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.refuse("RecordPayment", payment(), "forbidden", org=AUDITOR)
    ledger.refuse("RecordPayment", {**payment(), "invoice_id": "inv-nope"}, "unknown_invoice")
    ledger.refuse("RecordPayment", payment(paid_at="yesterday"), "invalid_argument")
    ledger.refuse("RecordPayment", {"invoice_id": INV, "amount": "1.00"}, "invalid_argument")


def test_dispute_and_full_credit_note(ledger: ChaincodeLedger) -> None:
    ledger.refuse("Dispute", {"invoice_id": INV, "reason": "wrong"}, "forbidden", org=PROVIDER)
    ledger.refuse("Dispute", {"invoice_id": INV, "reason": ""}, "invalid_argument", org=CUSTOMER)
    ledger.refuse("IssueCreditNote", {"invoice_id": INV, "reason": "x"}, "invalid_state_transition")
    disputed = ledger.submit("Dispute", {"invoice_id": INV, "reason": "scan count"}, org=CUSTOMER)
    assert disputed["status"] == "DISPUTED"
    assert disputed["dispute"]["reason"] == "scan count"
    assert ledger.last_event() == ("InvoiceDisputed", {"invoice_id": INV})
    assert ledger.noop("Dispute", {"invoice_id": INV, "reason": "scan count"}, org=CUSTOMER) == disputed
    ledger.refuse("Dispute", {"invoice_id": INV, "reason": "other"}, "invalid_state_transition", org=CUSTOMER)
    ledger.submit("RecordErpPosting", posting())  # a delivery racing the dispute is still recorded
    ledger.refuse("RecordPayment", payment(), "invalid_state_transition")

    ledger.refuse("IssueCreditNote", {"invoice_id": INV, "reason": "agreed"}, "forbidden", org=CUSTOMER)
    note = ledger.submit("IssueCreditNote", {"invoice_id": INV, "reason": "agreed"})
    cn = f"cn-{INV}-1"
    assert note["id"] == cn
    assert (note["type"], note["credit_for"], note["reason"], note["status"]) == (
        "credit_note",
        INV,
        "agreed",
        "ISSUED",
    )
    assert (note["subtotal"], note["tax"], note["total"]) == ("11475.00", "2180.25", TOTAL)
    assert note["lines"] == ledger.state(keys.invoice(INV))["lines"]
    assert _status(ledger) == "CREDITED"
    assert ledger.state(keys.invoice(INV))["credit_notes"] == [cn]
    assert ledger.endorsement(keys.invoice(cn)) == sorted([PROVIDER, CUSTOMER])
    assert ledger.last_event() == (
        "CreditNoteIssued",
        {"invoice_id": INV, "credit_note_id": cn, "amount": TOTAL},
    )
    assert ledger.evaluate("GetInvoice", {"id": cn}) == note
    # replay returns the credit note; a credited invoice accepts nothing else
    assert ledger.noop("IssueCreditNote", {"invoice_id": INV, "reason": "agreed"}) == note
    ledger.refuse("IssueCreditNote", {"invoice_id": INV, "reason": "again"}, "invalid_state_transition")
    ledger.refuse("Dispute", {"invoice_id": INV, "reason": "x"}, "invalid_state_transition", org=CUSTOMER)
    ledger.refuse("RecordErpPosting", posting("customer", "AP-9"), "invalid_state_transition")
    # the credit note itself goes to the ERPs like an invoice
    posted = ledger.submit("RecordErpPosting", {**posting(document_id="SAP-CN-1"), "invoice_id": cn})
    assert posted["status"] == "POSTED"
    ledger.refuse("RecordPayment", {**payment(), "invoice_id": cn}, "invalid_argument")
    ledger.refuse("Dispute", {"invoice_id": cn, "reason": "x"}, "invalid_state_transition", org=CUSTOMER)
    listed = ledger.evaluate("ListInvoices", {"contract_id": CONTRACT_ID})["invoices"]
    assert [i["id"] for i in listed] == [cn, INV]


def test_partial_credit_note_splits_net_and_tax(ledger: ChaincodeLedger) -> None:
    ledger.submit("Dispute", {"invoice_id": INV, "reason": "scan count"}, org=CUSTOMER)
    ledger.refuse(
        "IssueCreditNote", {"invoice_id": INV, "reason": "r", "amount": "13655.26"}, "invalid_argument"
    )
    ledger.refuse(
        "IssueCreditNote", {"invoice_id": INV, "reason": "r", "amount": "1.234"}, "invalid_argument"
    )
    note = ledger.submit("IssueCreditNote", {"invoice_id": INV, "reason": "ten scans", "amount": "1011.50"})
    # 1011.50 / 1.19 = 850.00 net, 161.50 tax
    assert (note["subtotal"], note["tax"], note["total"]) == ("850.00", "161.50", "1011.50")
    assert note["lines"] == [{"charge_id": "credit", "model": "credit", "quantity": "1", "amount": "850.00"}]
    assert ledger.last_event()[1]["amount"] == "1011.50"


def test_dispute_from_posted_and_partially_paid(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.submit("RecordPayment", payment("p1", "10.00"))
    out = ledger.submit("Dispute", {"invoice_id": INV, "reason": "rest is wrong"}, org=CUSTOMER)
    assert [h["status"] for h in out["history"]] == ["ISSUED", "POSTED", "PARTIALLY_PAID", "DISPUTED"]


def test_settlement_refusals_for_unknown_invoices(ledger: ChaincodeLedger) -> None:
    ledger.refuse("Dispute", {"invoice_id": "nope", "reason": "x"}, "unknown_invoice", org=CUSTOMER)
    ledger.refuse("IssueCreditNote", {"invoice_id": "nope", "reason": "x"}, "unknown_invoice")


# --- overpayment accepted and payment reversals (ADR 0043) ------------------------------------------


def test_accepted_overpayment_settles_and_records_the_excess(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.refuse("RecordPayment", payment("pay-1", "13700.00"), "overpayment")  # the default is unchanged
    ledger.refuse("RecordPayment", payment("pay-1", "13700.00", accept_overpayment="yes"), "invalid_argument")
    done = ledger.submit("RecordPayment", {**payment("pay-1", "13700.00"), "accept_overpayment": True})
    assert (done["status"], done["paid"], done["overpaid"]) == ("SETTLED", "13700.00", "44.75")
    assert ledger.noop("RecordPayment", {**payment("pay-1", "13700.00"), "accept_overpayment": True}) == done


def test_reversal_reopens_a_settled_invoice_once(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.submit("RecordPayment", payment("pay-1", "655.00"))
    ledger.submit("RecordPayment", payment("pay-2", "13000.25"))
    reversal = {"invoice_id": INV, "payment_id": "pay-2", "reversal_id": "rv-1", "reason": "AM04"}
    reopened = ledger.submit("ReversePayment", reversal)
    assert (reopened["status"], reopened["paid"]) == ("PARTIALLY_PAID", "655.00")
    assert reopened["payments"][1]["reversal"] == {"reversal_id": "rv-1", "reason": "AM04",
                                                   "tx_id": ledger.last_stub.tx_id,
                                                   "at": reopened["payments"][1]["reversal"]["at"]}
    assert ledger.last_event() == ("PaymentReversed", {"invoice_id": INV, "payment_id": "pay-2",
                                                       "reversal_id": "rv-1", "reason": "AM04",
                                                       "status": "PARTIALLY_PAID"})
    assert [h["status"] for h in reopened["history"]] == [
        "ISSUED", "POSTED", "PARTIALLY_PAID", "SETTLED", "PARTIALLY_PAID"]
    assert ledger.noop("ReversePayment", reversal) == reopened  # a retried reversal
    ledger.refuse("ReversePayment", {**reversal, "reversal_id": "rv-2"}, "payment_already_reversed")
    ledger.refuse("ReversePayment", {**reversal, "payment_id": "pay-9"}, "unknown_payment")
    ledger.refuse("ReversePayment", {**reversal, "reason": ""}, "invalid_argument")
    ledger.refuse("ReversePayment", reversal | {"reversal_id": "rv-3", "payment_id": "pay-1"}, "forbidden",
                  org=AUDITOR)
    # the last payment back: nothing paid, the invoice is open again as posted
    empty = ledger.submit("ReversePayment", {**reversal, "payment_id": "pay-1", "reversal_id": "rv-3"})
    assert (empty["status"], empty["paid"]) == ("POSTED", "0.00")
    # and it can be paid again
    again = ledger.submit("RecordPayment", payment("pay-3", TOTAL))
    assert (again["status"], again["paid"]) == ("SETTLED", TOTAL)


def test_reversing_an_overpayment_clears_the_excess(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordErpPosting", posting())
    ledger.submit("RecordPayment", payment("pay-1", "13000.25"))
    over = ledger.submit("RecordPayment", {**payment("pay-2", "1000.00"), "accept_overpayment": True})
    assert (over["status"], over["paid"], over["overpaid"]) == ("SETTLED", "14000.25", "345.00")
    # a settled invoice takes no further payment, accepted overpayment or not
    ledger.refuse("RecordPayment", {**payment("pay-3", "1.00"), "accept_overpayment": True},
                  "invalid_state_transition")
    back = ledger.submit("ReversePayment", {"invoice_id": INV, "payment_id": "pay-2", "reversal_id": "rv-1",
                                            "reason": "MD06"})
    assert (back["status"], back["paid"]) == ("PARTIALLY_PAID", "13000.25") and "overpaid" not in back


# --- prepaid balances (ADR 0043) -----------------------------------------------------------------------


def _prepaid_ledger(top_ups: list[tuple[str, str]]) -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY)
    ledger.submit("RecordUsage", {"messages": example_usage(KEY)})
    for top_up_id, amount in top_ups:
        ledger.submit("TopUpPrepaid", {"contract_id": CONTRACT_ID, "top_up_id": top_up_id, "amount": amount},
                      org=CUSTOMER)
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, at=NOV_END)
    ledger.now = LATER
    return ledger


def test_a_covering_prepaid_balance_settles_the_invoice_at_issue() -> None:
    ledger = _prepaid_ledger([("tu-1", "10000.00"), ("tu-2", "5000.00")])
    invoice = ledger.evaluate("GetInvoice", {"id": INV})
    assert (invoice["status"], invoice["paid"], invoice["settled_by"]) == ("SETTLED", TOTAL, "prepaid")
    assert [h["status"] for h in invoice["history"]] == ["ISSUED", "SETTLED"]
    assert invoice["payments"][0]["payment_id"] == f"prepaid:{INV}"
    balance = ledger.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})
    assert balance["balance"] == "1344.75"  # 15000.00 - 13655.25, never negative
    assert [m["kind"] for m in balance["movements"]] == ["top_up", "top_up", "draw"]
    # the settled invoice still reaches the ERPs; it stays SETTLED
    posted = ledger.submit("RecordErpPosting", posting())
    assert posted["status"] == "SETTLED" and len(posted["erp_refs"]) == 1
    # closing again changes nothing and draws nothing twice
    ledger.noop("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    assert ledger.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})["balance"] == "1344.75"


def test_a_balance_that_does_not_cover_the_invoice_pays_what_it_holds() -> None:
    """ADR 0051 (was: left alone): the balance pays what it holds, the invoice stays open for the rest."""
    ledger = _prepaid_ledger([("tu-1", "100.00")])
    invoice = ledger.evaluate("GetInvoice", {"id": INV})
    assert (invoice["status"], invoice["paid"]) == ("ISSUED", "100.00") and "settled_by" not in invoice
    assert [p["payment_id"] for p in invoice["payments"]] == [f"prepaid:{INV}"]
    assert ledger.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})["balance"] == "0.00"
    # and a contract never funded has a zero balance, not an error
    plain = ChaincodeLedger()
    active_contract(plain, KEY)
    assert plain.evaluate("GetPrepaid", {"contract_id": CONTRACT_ID})["balance"] == "0.00"


def test_top_up_refusals_and_replays() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY)
    body = {"contract_id": CONTRACT_ID, "top_up_id": "tu-1", "amount": "50.00"}
    first = ledger.submit("TopUpPrepaid", body)
    assert ledger.noop("TopUpPrepaid", body) == first
    ledger.refuse("TopUpPrepaid", {**body, "amount": "60.00"}, "payment_conflict")
    ledger.refuse("TopUpPrepaid", {**body, "top_up_id": "tu-2", "amount": "1.001"}, "invalid_argument")
    ledger.refuse("TopUpPrepaid", {**body, "top_up_id": "tu-3", "amount": "-5"}, "invalid_argument")
    ledger.refuse("TopUpPrepaid", {**body, "top_up_id": "tu-4"}, "forbidden", org=AUDITOR)
    ledger.refuse("TopUpPrepaid", {**body, "contract_id": "nope"}, "unknown_contract")
