"""Late readings of an amended contract (ADR 0048 "Later", issue 17): late usage is rated with the plan
version(s) in force in the period it belongs to, not with the contract's current plan.

Plans of tests/unit/test_contract_amendments.py: version 1 scans 80.00 each (platform 500.00, minimum
3000.00), version 2 scans 95.00 (platform 620.00, minimum 3600.00); tax 19 %, Europe/Berlin; the
contract runs from 1 September 2026 with the `next_invoice` policy.

(a) Version 2 from 1 October 00:00 CEST. September (5 scans) closes on 1 October; two late September scans
    arrive on 5 October. October (3 scans), wholly version 2: platform 620.00, scans 3 x 95.00 = 285.00,
    minimum true-up 3600.00 - 905.00 = 2695.00; late 2 x 80.00 = 160.00 (version 1, September's price,
    not 2 x 95.00 = 190.00). Subtotal 3760.00, tax 714.40, total 4474.40.
(b) Version 2 from 16 September 00:00 CEST (cuts September). Late scans of 10 and 20 September arrive on
    5 October: 1 x 80.00 under version 1, 1 x 95.00 under version 2. October, no readings of its own:
    620.00 + 0.00 + true-up 2980.00 + late 175.00 = 3775.00, tax 717.25, total 4492.25.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)
from tests.unit.test_contract_amendments import PLAN_V1, PLAN_V2

pytestmark = pytest.mark.unit
U = dt.UTC
NEXT = {"policy": "next_invoice", "max_lateness": "P35D"}


def _ledger(effective: str) -> tuple[ChaincodeLedger, Any]:
    """The contract from 1 September, version 2 agreed on 10 September, effective at `effective`."""
    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 9, 1, 8, tzinfo=U)), make_device_key()
    active_contract(ledger, key, **{**PLAN_V1, "start": "2026-09-01"}, late_readings=NEXT)
    ledger.now = dt.datetime(2026, 9, 10, 8, tzinfo=U)
    ledger.submit("ProposeAmendment", {"contract_id": CONTRACT_ID, "id": "am-1", "effective_from": effective,
                                       "plan": PLAN_V2})
    ledger.submit("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": "am-1"}, org=CUSTOMER)
    return ledger, key


def _send(ledger: ChaincodeLedger, key: Any, mid: str, readings: list, at: dt.datetime) -> dict[str, Any]:
    ledger.now = at
    return ledger.submit("RecordUsage", {"messages": [signed_message(key, readings, message_id=mid)]})


def _close(ledger: ChaincodeLedger, period: str, at: dt.datetime) -> dict[str, Any]:
    ledger.now = at
    return ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": period})


def _late(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(ln["charge_id"], ln["plan_version"], ln["quantity"], ln["amount"], ln["late_of"],
             ln["description"]) for ln in invoice["lines"] if "late_of" in ln]


def september_closed_then_late(effective: str, late: list) -> tuple[ChaincodeLedger, dict, dict]:
    """(ledger, September's invoice, October's invoice) after the late readings of 5 October."""
    ledger, key = _ledger(effective)
    on_time = [reading(f"s{i}", "scan", "1", f"2026-09-{3 + i:02d}T10:00:00+02:00") for i in range(5)]
    assert _send(ledger, key, "m-sep", on_time, dt.datetime(2026, 9, 30, 12, tzinfo=U))["accepted"] == 5
    september = _close(ledger, "2026-09", dt.datetime(2026, 10, 1, 12, tzinfo=U))
    assert _send(ledger, key, "m-late", late, dt.datetime(2026, 10, 5, 12, tzinfo=U))["accepted"] == len(late)
    return ledger, september, key


def test_a_late_reading_is_billed_at_its_period_s_price_after_a_price_rise() -> None:
    late = [reading("l1", "scan", "1", "2026-09-28T10:00:00+02:00"),
            reading("l2", "scan", "1", "2026-09-29T10:00:00+02:00")]
    ledger, september, key = september_closed_then_late("2026-10-01T00:00:00+02:00", late)
    october_own = [reading(f"o{i}", "scan", "1", f"2026-10-{6 + i:02d}T10:00:00+02:00") for i in range(3)]
    assert _send(ledger, key, "m-oct", october_own, dt.datetime(2026, 10, 20, tzinfo=U))["accepted"] == 3
    preview = ledger.evaluate("PreviewInvoice", {"contract_id": CONTRACT_ID, "period": "2026-10"})["invoice"]
    october = _close(ledger, "2026-10", dt.datetime(2026, 11, 1, 12, tzinfo=U))
    assert [(ln["charge_id"], ln["plan_version"], ln["quantity"], ln["amount"])
            for ln in october["lines"] if "late_of" not in ln] == [
        ("platform", 2, "1", "620.00"), ("scans", 2, "3", "285.00"),
        ("minimum_commitment_true_up", 2, "1", "2695.00")]
    assert _late(october) == [
        ("scans", 1, "2", "160.00", "2026-09", "late usage 2026-09 (plan version 1)")]
    assert (october["subtotal"], october["tax"], october["total"]) == ("3760.00", "714.40", "4474.40")
    assert (october["readings"], october["late_readings"]) == (3, 2)
    assert _late(preview) == _late(october) and preview["total"] == october["total"]
    # September's invoice never changed
    stored = ledger.evaluate("GetInvoice", {"id": september["id"]})
    assert (stored["lines"], stored["total"]) == (september["lines"], september["total"])


def test_an_amendment_inside_the_late_period_rates_each_reading_under_its_version() -> None:
    late = [reading("l-old", "scan", "1", "2026-09-10T10:00:00+02:00"),
            reading("l-new", "scan", "1", "2026-09-20T10:00:00+02:00")]
    ledger, _september, _key = september_closed_then_late("2026-09-16T00:00:00+02:00", late)
    october = _close(ledger, "2026-10", dt.datetime(2026, 11, 1, 12, tzinfo=U))
    assert _late(october) == [
        ("scans", 1, "1", "80.00", "2026-09", "late usage 2026-09 (plan version 1)"),
        ("scans", 2, "1", "95.00", "2026-09", "late usage 2026-09 (plan version 2)"),
    ]
    assert (october["subtotal"], october["tax"], october["total"]) == ("3775.00", "717.25", "4492.25")


def test_a_contract_never_amended_keeps_its_unversioned_late_lines() -> None:
    ledger, key = ChaincodeLedger(now=dt.datetime(2026, 9, 1, 8, tzinfo=U)), make_device_key()
    active_contract(ledger, key, **{**PLAN_V1, "start": "2026-09-01"}, late_readings=NEXT)
    _close(ledger, "2026-09", dt.datetime(2026, 10, 1, 12, tzinfo=U))
    late = [reading("l1", "scan", "1", "2026-09-28T10:00:00+02:00")]
    assert _send(ledger, key, "m-late", late, dt.datetime(2026, 10, 5, tzinfo=U))["accepted"] == 1
    october = _close(ledger, "2026-10", dt.datetime(2026, 11, 1, 12, tzinfo=U))
    assert [ln for ln in october["lines"] if "late_of" in ln] == [
        {"charge_id": "scans", "model": "per_unit", "metric": "scan", "quantity": "1", "amount": "80.00",
         "late_of": "2026-09", "description": "late usage 2026-09"}]


def test_the_verifier_takes_only_amendable_fields_and_refuses_a_version_1_that_was_not_accepted() -> None:
    from hub.audit import amended_evidence

    ledger, _key = _ledger("2026-10-01T00:00:00+02:00")
    written = ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    agreed = {**written, "plan_version": None}
    for k in ("versions", "end", "ended_by"):
        agreed.pop(k, None)
    agreed.update({k: v for k, v in written["versions"][0]["plan"].items()})
    rated_with, problem = amended_evidence.at_close(agreed, written)
    assert problem == "" and rated_with["versions"] == written["versions"]
    assert rated_with["charges"] == PLAN_V2["charges"]
    # a fixed term the record at close claims is not taken: the agreed contract's stays
    usd = amended_evidence.at_close(agreed, {**written, "currency": "USD"})[0]
    assert usd["currency"] == agreed["currency"]
    forged = {**written, "versions": [{**written["versions"][0], "plan": PLAN_V2}, written["versions"][1]]}
    rated_with, problem = amended_evidence.at_close(agreed, forged)
    assert problem == "plan version 1 is not the contract as accepted" and "versions" not in rated_with
    unreadable = amended_evidence.at_close(agreed, {**written, "versions": ["x"]})
    assert unreadable[1] == "plan versions are unreadable"
    assert amended_evidence.at_close(agreed, None) == (agreed, "")
