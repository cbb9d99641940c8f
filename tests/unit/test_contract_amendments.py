"""Amendments on the contract (ADR 0046): a new plan version or an end date, proposed by the provider,
accepted or rejected by the customer; a period spanning two versions rated exactly; the preview query.

The hand-computed invoice: October 2026 in Europe/Berlin has 745 hours (the clock falls back on 25 Oct).
Version 1 (platform 500.00 flat, scans 80.00 each, minimum 3000.00) is in force until 26 Oct 00:00 CET
(2026-10-25T23:00Z), version 2 (platform 620.00, scans 95.00, minimum 3600.00) after it. Version 1 holds
601 hours (25 days + the repeated hour) = 2,163,600 s, version 2 144 hours = 518,400 s, of 2,682,000 s:

    v1 platform  500.00 x 2163600/2682000 = 403.3557... -> 403.36
    v1 scans     20 x 80.00                              1600.00
    v1 minimum  3000.00 x 2163600/2682000 = 2420.1342... -> 2420.13; true-up 2420.13 - 2003.36 = 416.77
    v2 platform  620.00 x 518400/2682000  = 119.8389... -> 119.84
    v2 scans     3 x 95.00                                285.00
    v2 minimum  3600.00 x 518400/2682000  = 695.8389...  -> 695.84; true-up 695.84 - 404.84 = 291.00
    subtotal 3115.97, tax 19 % = 592.0343 -> 592.03, total 3708.00

(A naive 744-hour month would give 600/744 and a platform share of 403.23.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

pytestmark = pytest.mark.unit
U = dt.UTC

PLAN_V1: dict[str, Any] = {
    "start": "2026-10-01",
    "metrics": {"scan": {"aggregation": "sum", "unit": "scan"}},
    "charges": [
        {"id": "platform", "model": "flat", "amount": "500.00"},
        {"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "80.00"},
    ],
    "minimum_commitment": "3000.00",
}
PLAN_V2: dict[str, Any] = {
    "charges": [
        {"id": "platform", "model": "flat", "amount": "620.00"},
        {"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "95.00"},
    ],
    "minimum_commitment": "3600.00",
}
EFFECTIVE = "2026-10-26T00:00:00+01:00"
EXPECTED_LINES = [
    ("platform", 1, "1", "403.36"),
    ("scans", 1, "20", "1600.00"),
    ("minimum_commitment_true_up", 1, "1", "416.77"),
    ("platform", 2, "1", "119.84"),
    ("scans", 2, "3", "285.00"),
    ("minimum_commitment_true_up", 2, "1", "291.00"),
]


def october_readings() -> list[dict[str, Any]]:
    """20 scans under version 1 (two of them in the repeated hour 02:00-03:00 of 25 Oct, one CEST and
    one CET), 3 under version 2."""
    rs = [reading(f"r{i}", "scan", "1", f"2026-10-{2 + i:02d}T10:00:00+02:00") for i in range(18)]
    rs += [reading("r-cest", "scan", "1", "2026-10-25T02:30:00+02:00"),
           reading("r-cet", "scan", "1", "2026-10-25T02:30:00+01:00")]
    rs += [reading(f"n{i}", "scan", "1", f"2026-10-{27 + i:02d}T10:00:00+01:00") for i in range(3)]
    return rs


def amended_ledger() -> tuple[ChaincodeLedger, Any]:
    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 10, 1, 8, tzinfo=U)), make_device_key()
    active_contract(ledger, key, **PLAN_V1)
    return ledger, key


def propose(ledger: ChaincodeLedger, **body: Any) -> dict[str, Any]:
    return ledger.submit("ProposeAmendment", {"contract_id": CONTRACT_ID, **body})


def accept(ledger: ChaincodeLedger, amendment_id: str) -> dict[str, Any]:
    return ledger.submit("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": amendment_id},
                         org=CUSTOMER)


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [(ln["charge_id"], ln["plan_version"], ln["quantity"], ln["amount"]) for ln in invoice["lines"]]


def test_mid_period_price_change_across_the_dst_change_is_rated_by_hand() -> None:
    ledger, key = amended_ledger()
    ledger.now = dt.datetime(2026, 10, 20, tzinfo=U)
    proposed = propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    assert (proposed["status"], proposed["effective_from"]) == ("PROPOSED", "2026-10-25T23:00:00Z")
    assert ledger.state(f"\x00contract\x00{CONTRACT_ID}\x00").get("versions") is None  # not yet agreed
    accepted = accept(ledger, "am-1")
    assert (accepted["status"], accepted["version"], accepted["answered_by"]) == ("ACCEPTED", 2, CUSTOMER)
    assert ledger.last_event()[0] == "ContractAmended"
    ledger.now = dt.datetime(2026, 10, 31, 12, tzinfo=U)
    assert ledger.submit("RecordUsage", {"messages": [signed_message(key, october_readings())]})[
        "accepted"] == 23
    preview = ledger.evaluate("PreviewInvoice", {"contract_id": CONTRACT_ID, "period": "2026-10"})
    assert preview["status"] == "OPEN" and lines(preview["invoice"]) == EXPECTED_LINES
    ledger.now = dt.datetime(2026, 11, 1, 12, tzinfo=U)
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-10"})
    assert lines(invoice) == EXPECTED_LINES
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("3115.97", "592.03", "3708.00")
    assert invoice["plan_versions"] == [1, 2]
    assert invoice["lines"][3]["description"] == "platform (plan version 2)"
    segments = [(s["versions"], s["seconds"], s["period_seconds"], s["readings"])
                for s in invoice["segments"]]
    assert segments == [([1], "2163600", "2682000", 20), ([2], "518400", "2682000", 3)]
    # the preview was the invoice, but for where and when it was committed
    volatile = {"tx_id", "issued_at", "history"}
    assert {k: v for k, v in preview["invoice"].items() if k not in volatile} == {
        k: v for k, v in invoice.items() if k not in volatile}
    # November is wholly under version 2 and rated from its aggregates as before, lines naming version 2
    ledger.now = dt.datetime(2026, 12, 1, 12, tzinfo=U)
    nov = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    assert lines(nov) == [("platform", 2, "1", "620.00"), ("scans", 2, "0", "0.00"),
                          ("minimum_commitment_true_up", 2, "1", "2980.00")]


def test_history_names_every_version_who_proposed_and_accepted_it_and_the_tx_ids() -> None:
    ledger, _ = amended_ledger()
    ledger.now = dt.datetime(2026, 10, 20, tzinfo=U)
    proposed = propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    accepted = accept(ledger, "am-1")
    history = ledger.evaluate("GetContractHistory", {"contract_id": CONTRACT_ID})
    assert history["plan_version"] == 2
    v1, v2 = history["versions"]
    assert (v1["version"], v1["effective_from"], v1["proposed_by"], v1["accepted_by"]) == (
        1, None, PROVIDER, CUSTOMER)
    assert v1["plan"]["minimum_commitment"] == "3000.00" and v1["accepted_tx"]
    assert (v2["version"], v2["effective_from"], v2["amendment_id"]) == (2, "2026-10-25T23:00:00Z", "am-1")
    assert (v2["proposed_tx"], v2["accepted_tx"]) == (proposed["proposed_tx"], accepted["answered_tx"])
    assert [a["id"] for a in history["amendments"]] == ["am-1"]
    # the contract's top-level pricing is the latest version's
    contract = ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    assert contract["minimum_commitment"] == "3600.00" and contract["plan_version"] == 2


def test_rejected_amendment_leaves_the_contract_as_it_was() -> None:
    ledger, _ = amended_ledger()
    before = ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    rejected = ledger.submit("RejectAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1",
                                                 "reason": "too dear"}, org=CUSTOMER)
    assert (rejected["status"], rejected["reason"]) == ("REJECTED", "too dear")
    assert ledger.evaluate("GetContract", {"id": CONTRACT_ID}) == before
    # answering again: the same answer, nothing written; accepting it now is a state error
    assert ledger.noop("RejectAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1"},
                       org=CUSTOMER)["status"] == "REJECTED"
    ledger.refuse("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1"},
                  "invalid_state_transition", org=CUSTOMER)
    # a rejected amendment no longer blocks a new one
    assert propose(ledger, id="am-2", effective_from=EFFECTIVE, plan=PLAN_V2)["status"] == "PROPOSED"


def test_replays_write_nothing() -> None:
    ledger, _ = amended_ledger()
    body = {"contract_id": CONTRACT_ID, "id": "am-1", "effective_from": EFFECTIVE, "plan": PLAN_V2}
    first = ledger.submit("ProposeAmendment", body)
    assert ledger.noop("ProposeAmendment", body) == first
    accepted = accept(ledger, "am-1")
    assert ledger.noop("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1"},
                       org=CUSTOMER) == accepted


def test_an_agreed_end_issues_the_final_invoice_prorated() -> None:
    ledger, key = amended_ledger()
    ledger.now = dt.datetime(2026, 10, 10, tzinfo=U)
    proposed = propose(ledger, id="end", end="2026-10-15")
    assert (proposed["kind"], proposed["effective_from"]) == ("end", "2026-10-15T22:00:00Z")
    accept(ledger, "end")
    contract = ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    assert contract["end"] == "2026-10-15" and contract["ended_by"]["amendment_id"] == "end"
    ledger.now = dt.datetime(2026, 10, 16, 8, tzinfo=U)
    sent = ledger.submit("RecordUsage", {"messages": [signed_message(key, [
        reading("in", "scan", "1", "2026-10-15T23:59:59+02:00"),
    ])]})
    assert sent["accepted"] == 1
    late = ledger.submit("RecordUsage", {"messages": [signed_message(key, [
        reading("after", "scan", "1", "2026-10-16T00:00:00+02:00")], message_id="m2")]})
    assert late["results"][0]["error"]["code"] == "timestamp_outside_contract"
    # the final invoice is issued once the contract has ended, before the month is over
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-10"})
    # 1 Oct 00:00 CEST to 16 Oct 00:00 CEST = 15 days = 1,296,000 s of 2,682,000 s: platform
    # 500.00 x 1296000/2682000 = 241.6107 -> 241.61; minimum 3000.00 x the same = 1449.6644 -> 1449.66,
    # true-up 1449.66 - (241.61 + 80.00) = 1128.05
    assert invoice["segments"][0]["seconds"] == "1296000"
    assert lines(invoice) == [("platform", 1, "1", "241.61"), ("scans", 1, "1", "80.00"),
                              ("minimum_commitment_true_up", 1, "1", "1128.05")]
    assert ledger.evaluate("GetContract", {"id": CONTRACT_ID})["status"] == "ENDED"


# --- refusals: each writes nothing (ChaincodeLedger.refuse checks the world and the stub) ----------------

def _amend(**body: Any) -> dict[str, Any]:
    return {"contract_id": CONTRACT_ID, "id": "am-x", "effective_from": EFFECTIVE, "plan": PLAN_V2, **body}


@pytest.mark.parametrize(("body", "code"), [
    (_amend(effective_from="2026-09-30T00:00:00Z"), "amendment_in_past"),
    (_amend(effective_from="2026-10-01T07:59:59Z"), "amendment_in_past"),  # just before "now"
    (_amend(plan={**PLAN_V2, "currency": "USD"}), "amendment_changes_fixed_terms"),
    (_amend(plan={**PLAN_V2, "customer": "OtherMSP"}), "amendment_changes_fixed_terms"),
    (_amend(plan={**PLAN_V2, "provider": "OtherMSP"}), "amendment_changes_fixed_terms"),
    (_amend(plan={**PLAN_V2, "metrics": {"kwh": {"aggregation": "sum"}}}), "amendment_changes_fixed_terms"),
    (_amend(plan={**PLAN_V2, "tax": None}), "amendment_changes_fixed_terms"),
    (_amend(plan={"charges": [{"id": "p", "model": "dynamic", "metric": "scan"}]}),
     "amendment_changes_fixed_terms"),
    (_amend(plan={"charges": [{"id": "p", "model": "flat", "amount": "-1"}]}), "invalid_plan"),
    (_amend(plan={}), "invalid_argument"),
    (_amend(end="2026-10-20"), "invalid_argument"),  # plan and end at once
    ({"contract_id": CONTRACT_ID, "id": "am-x", "end": "20-10-2026"}, "invalid_argument"),
    (_amend(effective_from="yesterday"), "invalid_argument"),
    (_amend(extra=1), "invalid_argument"),
    (_amend(contract_id="nope"), "unknown_contract"),
])
def test_bad_proposals_are_refused_and_write_nothing(body: dict[str, Any], code: str) -> None:
    ledger, _ = amended_ledger()
    ledger.refuse("ProposeAmendment", body, code)


def test_who_may_do_what() -> None:
    ledger, _ = amended_ledger()
    ledger.refuse("ProposeAmendment", _amend(), "forbidden", org=CUSTOMER)
    ledger.refuse("ProposeAmendment", _amend(), "forbidden", org="AuditorMSP")
    propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    answer = {"contract_id": CONTRACT_ID, "amendment_id": "am-1"}
    ledger.refuse("AcceptAmendment", answer, "forbidden", org=PROVIDER)
    ledger.refuse("RejectAmendment", answer, "forbidden", org=PROVIDER)
    ledger.refuse("AcceptAmendment", {**answer, "amendment_id": "nope"}, "unknown_amendment", org=CUSTOMER)
    ledger.refuse("GetAmendment", {**answer, "amendment_id": "nope"}, "unknown_amendment")


def test_overlapping_and_conflicting_amendments_are_refused() -> None:
    ledger, _ = amended_ledger()
    propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    # another amendment while one awaits an answer, and the same id with other content
    ledger.refuse("ProposeAmendment", _amend(id="am-2"), "amendment_pending")
    ledger.refuse("ProposeAmendment", _amend(id="am-1", effective_from="2026-10-27T00:00:00Z"),
                  "amendment_exists")
    accept(ledger, "am-1")
    # effective at or before the accepted version's instant
    ledger.refuse("ProposeAmendment", _amend(id="am-3", effective_from="2026-10-20T00:00:00Z"),
                  "amendment_overlaps")
    ledger.refuse("ProposeAmendment", _amend(id="am-3"), "amendment_overlaps")
    # an end before the accepted version takes effect would cut it off: refused the same way
    ledger.refuse("ProposeAmendment", {"contract_id": CONTRACT_ID, "id": "end", "end": "2026-10-20"},
                  "amendment_overlaps")


def test_amendments_outside_the_term_or_of_inactive_contracts_are_refused() -> None:
    ledger, _ = amended_ledger()
    propose(ledger, id="end", end="2026-10-15")
    accept(ledger, "end")
    ledger.refuse("ProposeAmendment", _amend(id="late"), "amendment_outside_term")
    proposed_only = ChaincodeLedger(now=dt.datetime(2026, 10, 1, 8, tzinfo=U))
    key = make_device_key()
    from tests.helpers.chaincode import sample_asset, sample_contract

    proposed_only.submit("RegisterAsset", sample_asset(key))
    proposed_only.submit("ProposeContract", sample_contract(**PLAN_V1))
    proposed_only.refuse("ProposeAmendment", _amend(), "contract_not_active")


def test_an_amendment_whose_instant_has_passed_cannot_be_accepted() -> None:
    ledger, _ = amended_ledger()
    propose(ledger, id="am-1", effective_from=EFFECTIVE, plan=PLAN_V2)
    ledger.refuse("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1"},
                  "amendment_in_past", org=CUSTOMER, at=dt.datetime(2026, 10, 26, tzinfo=U))


def test_preview_of_a_closed_period_is_the_issued_invoice_and_of_a_never_amended_contract_as_before() -> None:
    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 11, 20, tzinfo=U)), make_device_key()
    active_contract(ledger, key)
    ledger.submit("RecordUsage", {"messages": [signed_message(key, [reading("a", "scan", "3")])]})
    preview = ledger.evaluate("PreviewInvoice", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    usage = ledger.evaluate("GetUsage", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    assert preview["invoice"]["lines"] == usage["cost"]["lines"]  # no plan_version: never amended
    assert "plan_version" not in preview["invoice"]["lines"][0]
    ledger.now = dt.datetime(2026, 12, 2, tzinfo=U)
    issued = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    after = ledger.evaluate("PreviewInvoice", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    assert after["status"] == "CLOSED" and after["invoice"] == issued


def test_time_of_use_prices_change_with_the_version_even_for_readings_recorded_after_acceptance() -> None:
    """The batch aggregates recorded after the acceptance hold buckets of the new version's charges; the
    period before the instant is still rated with the old windows and prices (from its readings)."""
    def tou(window: str, default: str) -> dict[str, Any]:
        return {"id": "scans", "model": "time_of_use", "metric": "scan", "default_unit_price": default,
                "windows": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "08:00",
                             "to": "18:00", "unit_price": window}]}

    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 10, 1, 8, tzinfo=U)), make_device_key()
    active_contract(ledger, key, start="2026-10-01", metrics=PLAN_V1["metrics"],
                    charges=[tou("10.00", "5.00")], minimum_commitment=None)
    ledger.now = dt.datetime(2026, 10, 20, tzinfo=U)
    propose(ledger, id="tou-2", effective_from=EFFECTIVE, plan={"charges": [tou("20.00", "7.00")]})
    accept(ledger, "tou-2")
    ledger.now = dt.datetime(2026, 10, 31, 12, tzinfo=U)
    rs = [reading(rid, "scan", "1", ts) for rid, ts in (
        ("a", "2026-10-21T10:00:00+02:00"), ("b", "2026-10-21T20:00:00+02:00"),  # window, default
        ("c", "2026-10-27T10:00:00+01:00"), ("d", "2026-10-27T20:00:00+01:00"))]
    ledger.submit("RecordUsage", {"messages": [signed_message(key, rs)]})
    ledger.now = dt.datetime(2026, 11, 1, 12, tzinfo=U)
    invoice = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-10"})
    assert [(ln["charge_id"], ln["plan_version"], ln["amount"]) for ln in invoice["lines"]] == [
        ("scans", 1, "15.00"), ("scans", 2, "27.00")]


@pytest.mark.parametrize("field", ["versions", "plan_version", "ended_by"])
def test_version_fields_cannot_be_proposed_with_a_contract(field: str) -> None:
    """Rating trusts `versions`: only accepted amendments write it."""
    from tests.helpers.chaincode import sample_asset, sample_contract

    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 10, 1, 8, tzinfo=U)), make_device_key()
    ledger.submit("RegisterAsset", sample_asset(key))
    forged = [{"version": 1, "effective_from": None, "plan": {"charges": [], "minimum_commitment": None,
                                                              "maximum": None}}]
    ledger.refuse("ProposeContract", sample_contract(**PLAN_V1, **{field: forged}), "invalid_argument")
