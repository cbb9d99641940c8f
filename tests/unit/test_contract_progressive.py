"""Progressive billing (ADR 0051) on the chaincode: interim invoices whenever the cost to date not yet
invoiced reaches the contract's threshold; the final invoice bills the rest and names the interim invoices
it deducts; over the period the interim and final invoices add up, to the cent, to the single invoice the
period would have had (a hypothesis property over usage split into batches, thresholds and two plans)."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode.errors import ChaincodeError
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    NOV_END,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
PERIOD = "2026-11"
VOLUME = {"charges": [{"id": "platform", "model": "flat", "amount": "99.00"},
                      {"id": "scans", "model": "volume", "metric": "scan",
                       "tiers": [{"up_to": "20", "unit_price": "9.99"},
                                 {"up_to": None, "unit_price": "7.49"}]},
                      {"id": "hours", "model": "per_unit", "metric": "magnet_hours", "unit_price": "12.35"}],
          "minimum_commitment": None}


def _batches(draw_batches: list[list[tuple[str, str]]]) -> list[dict]:
    out, n = [], 0
    for b, batch in enumerate(draw_batches):
        readings = []
        for metric, quantity in batch:
            n += 1
            day = 1 + n % 27
            ts = f"2026-11-{day:02d}T10:{n % 60:02d}:00+01:00"
            readings.append(reading(f"r-{n}", metric, quantity, ts))
        out.append(signed_message(KEY, readings, message_id=f"m-{b}"))
    return out


def _run(messages: list[dict], threshold: str | None, plan: dict) -> tuple[list[dict], dict]:
    ledger = ChaincodeLedger()
    overrides = copy.deepcopy(plan)
    if threshold is not None:
        overrides["billing_threshold"] = threshold
    active_contract(ledger, KEY, **overrides)
    interims = []
    for message in messages:
        ledger.submit("RecordUsage", {"messages": [message]})
        while threshold is not None:  # what the hub's job does after each batch
            try:
                interims.append(ledger.submit("IssueInterimInvoice", {"contract_id": CONTRACT_ID,
                                                                      "period": PERIOD}, org=CUSTOMER))
            except ChaincodeError as exc:
                assert exc.code == "interim_not_due"
                break
    final = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)
    return interims, final


quantities = st.decimals(min_value=Decimal("0.25"), max_value=Decimal("40"), places=2).map(str)
batch = st.lists(st.tuples(st.sampled_from(["scan", "magnet_hours"]), quantities), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(batch, min_size=1, max_size=6),
       threshold=st.decimals(min_value=Decimal("1"), max_value=Decimal("3000"), places=2).map(str),
       plan=st.sampled_from([{}, VOLUME]))
def test_interim_plus_final_equal_the_single_invoice_to_the_cent(batches: list, threshold: str,
                                                                 plan: dict) -> None:
    messages = _batches(batches)
    (), single = _run(messages, None, plan)
    interims, final = _run(messages, threshold, plan)
    for f in ("subtotal", "tax", "total"):
        assert sum(Decimal(i[f]) for i in interims) + Decimal(final[f]) == Decimal(single[f]), f
    assert [i["id"] for i in interims] == final.get("interim_invoices", [])
    for charge in (ln["charge_id"] for ln in single["lines"]):
        billed = [Decimal(ln["amount"]) for inv in [*interims, final] for ln in inv["lines"]
                  if ln["charge_id"] == charge]
        whole = next(Decimal(ln["amount"]) for ln in single["lines"] if ln["charge_id"] == charge)
        assert sum(billed) == whole
    for inv in [*interims, final]:
        assert sum(Decimal(ln["amount"]) for ln in inv["lines"]) == Decimal(inv["subtotal"])
        assert Decimal(inv["subtotal"]) + Decimal(inv["tax"]) == Decimal(inv["total"])
    if interims:
        assert final["period_total"]["total"] == single["total"]
        assert final["deducted"]["total"] == str(sum(Decimal(i["total"]) for i in interims))


def test_an_interim_invoice_is_issued_once_its_threshold_is_reached_and_never_twice() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, billing_threshold="5000.00")
    body = {"contract_id": CONTRACT_ID, "period": PERIOD}
    ledger.refuse("IssueInterimInvoice", body, "interim_not_due")  # no usage yet
    ledger.submit("RecordUsage", {"messages": _batches([[("scan", "30")]])})  # 500 + 30x85 = 3050 + tax
    err = ledger.refuse("IssueInterimInvoice", body, "interim_not_due")
    assert err.details["unbilled"] == "3629.50" and err.details["threshold"] == "5000.00"
    ledger.submit("RecordUsage", {"messages": _batches([[("scan", "30")], [("scan", "20")]])[1:]})
    first = ledger.submit("IssueInterimInvoice", body)
    assert (first["id"], first["kind"], first["sequence"], first["status"]) == (
        f"inv-{CONTRACT_ID}-{PERIOD}-i1", "interim", 1, "ISSUED")
    assert ledger.last_event()[0] == "InvoiceIssued"
    ledger.refuse("IssueInterimInvoice", body, "interim_not_due")  # the same usage is never billed twice
    ledger.refuse("IssueInterimInvoice", {**body, "period": "2026-13"}, "invalid_argument")
    ledger.refuse("IssueInterimInvoice", {**body, "contract_id": "nope"}, "unknown_contract")
    ledger.refuse("IssueInterimInvoice", body, "forbidden", org="OtherMSP")
    final = ledger.submit("CloseBillingPeriod", body, at=NOV_END)
    assert final["interim_invoices"] == [first["id"]]
    ledger.refuse("IssueInterimInvoice", body, "period_closed", at=NOV_END)


def test_a_contract_without_a_threshold_never_gets_an_interim_invoice() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY)
    ledger.submit("RecordUsage", {"messages": _batches([[("scan", "400")]])})
    ledger.refuse("IssueInterimInvoice", {"contract_id": CONTRACT_ID, "period": PERIOD}, "interim_not_due")


def test_get_running_says_when_an_interim_invoice_is_due() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, billing_threshold="5000.00")
    body = {"contract_id": CONTRACT_ID, "period": PERIOD}
    assert ledger.evaluate("GetRunning", body)["running"] is None
    assert ledger.evaluate("GetRunning", {"contract_id": CONTRACT_ID})["periods"] == []
    ledger.submit("RecordUsage", {"messages": _batches([[("scan", "50")]])})
    view = ledger.evaluate("GetRunning", body)
    assert (view["interim_due"], view["cost_to_date"], view["unbilled"]) == (True, "5652.50", "5652.50")
    listed = ledger.evaluate("GetRunning", {"contract_id": CONTRACT_ID})["periods"]
    assert [p["period"] for p in listed] == [PERIOD]
    ledger.submit("IssueInterimInvoice", body)
    assert ledger.evaluate("GetRunning", body)["interim_due"] is False
    ledger.submit("RecordUsage", {"messages": _batches([[("scan", "1")], [("scan", "80")]])[1:]})
    assert ledger.evaluate("GetRunning", body)["interim_due"] is True
    ledger.submit("CloseBillingPeriod", body, at=NOV_END)  # the final invoice bills it: nothing due any more
    assert ledger.evaluate("GetRunning", body)["interim_due"] is False
    assert ledger.evaluate("GetRunning", {"contract_id": CONTRACT_ID})["periods"] == []
