"""CloseBillingPeriod and the period / usage / invoice queries."""

from __future__ import annotations

import datetime as dt

import pytest

from chaincode import keys, rating
from tests.helpers.chaincode import (
    AUDITOR,
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    example_usage,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
NOV = {"contract_id": CONTRACT_ID, "period": "2026-11"}
INVOICE_ID = f"inv-{CONTRACT_ID}-2026-11"


def _close(ledger: ChaincodeLedger, body: dict = NOV, org: str = PROVIDER, at: dt.datetime = NOV_END) -> dict:
    return ledger.submit("CloseBillingPeriod", body, org=org, at=at)


def test_close_issues_the_api_example_invoice(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=4)})
    invoice = _close(ledger)
    tx_id = ledger.last_stub.tx_id
    assert invoice["id"] == INVOICE_ID
    assert invoice["lines"] == [
        {"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"},
        {
            "charge_id": "scans",
            "model": "graduated",
            "metric": "scan",
            "quantity": "130",
            "amount": "10600.00",
        },
        {
            "charge_id": "hours",
            "model": "per_unit",
            "metric": "magnet_hours",
            "quantity": "30.00",
            "amount": "375.00",
        },
    ]
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("11475.00", "2180.25", "13655.25")
    assert invoice["status"] == "ISSUED"
    assert invoice["readings"] == 170
    readings = ledger.evaluate("GetReadings", NOV)["readings"]
    digest = rating.combine_digests(rating.reading_hash(r) for r in readings)
    assert invoice["readings_digest"] == rating.digest_hex(digest)
    assert invoice["tx_id"] == tx_id
    assert "block" not in invoice  # the hub adds it; the chaincode cannot know it
    assert invoice["type"] == "invoice"
    assert (invoice["erp_refs"], invoice["payments"], invoice["paid"]) == ([], [], "0.00")
    assert invoice["history"] == [{"status": "ISSUED", "tx_id": tx_id, "at": "2026-11-30T23:00:00Z"}]
    assert invoice["issued_at"] == "2026-11-30T23:00:00Z"
    assert invoice["currency"] == "EUR"
    assert ledger.state(keys.invoice(INVOICE_ID)) == invoice
    assert ledger.state(keys.period(CONTRACT_ID, "2026-11")) == {
        "status": "CLOSED",
        "invoice_id": INVOICE_ID,
        "closed_tx": tx_id,
    }
    assert ledger.state(keys.contract(CONTRACT_ID))["last_closed_period"] == "2026-11"
    assert ledger.last_event() == (
        "InvoiceIssued",
        {
            "invoice_id": INVOICE_ID,
            "contract_id": CONTRACT_ID,
            "period": "2026-11",
            "currency": "EUR",
            "total": "13655.25",
            "erp": {"provider": "sap-soap", "customer": "oracle-rest"},
        },
    )


def test_close_sets_both_orgs_policy_on_invoice_and_period_keys(ledger: ChaincodeLedger) -> None:
    _close(ledger)
    both = sorted([PROVIDER, CUSTOMER])
    assert ledger.endorsement(keys.invoice(INVOICE_ID)) == both
    assert ledger.endorsement(keys.period(CONTRACT_ID, "2026-11")) == both
    written = [k for k, _ in ledger.world.write_log[-1][1]]
    assert keys.contract(CONTRACT_ID) in written  # the contract key (provider AND customer) is rewritten


def test_closing_again_returns_the_same_invoice_and_writes_nothing(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordUsage", {"messages": example_usage(KEY)})
    first = _close(ledger)
    later = NOV_END + dt.timedelta(days=3)
    assert ledger.noop("CloseBillingPeriod", NOV, org=CUSTOMER, at=later) == first


def test_split_batches_give_the_same_invoice(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=1)})
    one = _close(ledger)
    other = ChaincodeLedger()
    active_contract(other, KEY)
    msgs = example_usage(KEY, messages=5)
    for m in reversed(msgs):  # five transactions, in reverse order
        other.submit("RecordUsage", {"messages": [m]})
    five = _close(other)
    strip = ("tx_id", "history", "issued_at")
    assert {k: v for k, v in one.items() if k not in strip} == {
        k: v for k, v in five.items() if k not in strip
    }


def test_period_without_readings_still_issues(ledger: ChaincodeLedger) -> None:
    invoice = _close(ledger)
    assert invoice["lines"] == [
        {"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"},
        {"charge_id": "scans", "model": "graduated", "metric": "scan", "quantity": "0", "amount": "0.00"},
        {
            "charge_id": "hours",
            "model": "per_unit",
            "metric": "magnet_hours",
            "quantity": "0",
            "amount": "0.00",
        },
        {
            "charge_id": "minimum_commitment_true_up",
            "model": "minimum_commitment",
            "quantity": "1",
            "amount": "1500.00",
        },
    ]
    assert (invoice["subtotal"], invoice["tax"], invoice["total"], invoice["readings"]) == (
        "2000.00",
        "380.00",
        "2380.00",
        0,
    )
    assert invoice["readings_digest"] == "0" * 64


def test_period_must_have_ended_in_the_contract_timezone(ledger: ChaincodeLedger) -> None:
    # 1 December 00:00 in Berlin is 30 November 23:00 UTC: one microsecond earlier is too early
    err = ledger.refuse(
        "CloseBillingPeriod", NOV, "period_not_ended", at=NOV_END - dt.timedelta(microseconds=1)
    )
    assert err.details["period_end"] == "2026-11-30T23:00:00Z"
    assert _close(ledger, at=NOV_END)["status"] == "ISSUED"


def test_readings_for_a_closed_period_are_period_closed(ledger: ChaincodeLedger) -> None:
    _close(ledger)
    out = ledger.submit(
        "RecordUsage",
        {"messages": [signed_message(KEY, [reading("late")])]},
        at=NOV_END + dt.timedelta(hours=1),
    )
    assert out["results"][0]["error"]["code"] == "period_closed"
    assert out["results"][0]["error"]["reading_ids"] == ["late"]
    assert ledger.world.write_log[-1][1] == []


@pytest.mark.parametrize("period", ["2026-10", "2025-11"])
def test_period_before_contract_start_is_invalid(ledger: ChaincodeLedger, period: str) -> None:
    ledger.refuse(
        "CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": period}, "invalid_period", at=NOV_END
    )


@pytest.mark.parametrize(
    "period", ["2026-13", "26-11", "", None, 202611, "2026-11\n", "２０２６-11", "0001-01", "9999-12"]
)
def test_malformed_period_is_invalid_argument(ledger: ChaincodeLedger, period: object) -> None:
    ledger.refuse(
        "CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": period}, "invalid_argument", at=NOV_END
    )


def test_close_refusals(ledger: ChaincodeLedger) -> None:
    ledger.refuse("CloseBillingPeriod", NOV, "forbidden", org=AUDITOR, at=NOV_END)
    ledger.refuse("CloseBillingPeriod", {**NOV, "contract_id": "nope"}, "unknown_contract", at=NOV_END)


def test_proposed_contract_cannot_be_closed() -> None:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(KEY))
    ledger.submit("ProposeContract", sample_contract())
    ledger.refuse("CloseBillingPeriod", NOV, "contract_not_active", at=NOV_END)


def test_last_period_ends_the_contract() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, start="2026-10-01", end="2026-11-20")
    ledger.submit("RecordUsage", {"messages": [signed_message(KEY, [reading("r1")])]})
    ledger.refuse(
        "CloseBillingPeriod",
        {**NOV, "period": "2026-12"},
        "invalid_period",
        at=NOV_END + dt.timedelta(days=40),
    )
    _close(ledger)
    assert ledger.state(keys.contract(CONTRACT_ID))["status"] == "ENDED"
    # an earlier period can still be closed on an ended contract; usage is no longer accepted
    october = _close(ledger, {**NOV, "period": "2026-10"})
    assert october["id"] == f"inv-{CONTRACT_ID}-2026-10"
    assert ledger.state(keys.contract(CONTRACT_ID))["last_closed_period"] == "2026-11"
    out = ledger.submit("RecordUsage", {"messages": [signed_message(KEY, [reading("r2")], message_id="m2")]})
    assert out["results"][0]["error"]["code"] == "contract_not_active"
    # the asset is free for a new contract once the old one ended
    ledger.submit("ProposeContract", sample_contract(id="ctr-2", start="2026-12-01"))


def test_get_usage_is_the_invoice_closing_now_would_issue(ledger: ChaincodeLedger) -> None:
    ledger.submit("RecordUsage", {"messages": example_usage(KEY, messages=2)})
    usage = ledger.evaluate("GetUsage", NOV, org=CUSTOMER)
    assert usage["status"] == "OPEN"
    assert usage["aggregate"]["readings"] == 170
    assert usage["aggregate"]["metrics"]["scan"]["sum"] == "130"
    invoice = _close(ledger)
    for field in ("lines", "subtotal", "tax", "total", "readings", "readings_digest", "currency"):
        assert usage["cost"][field] == invoice[field]
    assert ledger.evaluate("GetUsage", NOV, at=NOV_END)["status"] == "CLOSED"
    ledger.refuse("GetUsage", {**NOV, "period": "2026-01"}, "invalid_period")
    ledger.refuse("GetUsage", {**NOV, "contract_id": "nope"}, "unknown_contract")


def test_get_period_and_list_invoices(ledger: ChaincodeLedger) -> None:
    assert ledger.evaluate("GetPeriod", NOV) == {**NOV, "status": "OPEN"}
    invoice = _close(ledger)
    assert ledger.evaluate("GetPeriod", NOV)["status"] == "CLOSED"
    assert ledger.evaluate("GetPeriod", NOV)["invoice_id"] == INVOICE_ID
    assert ledger.evaluate("GetInvoice", {"id": INVOICE_ID}, org=AUDITOR) == invoice
    ledger.refuse("GetInvoice", {"id": "inv-nope"}, "unknown_invoice")
    assert ledger.evaluate("ListInvoices", {})["invoices"] == [invoice]
    assert ledger.evaluate("ListInvoices", {"contract_id": CONTRACT_ID, "status": "ISSUED"})["invoices"] == [
        invoice
    ]
    assert ledger.evaluate("ListInvoices", {"status": "SETTLED"})["invoices"] == []
    assert ledger.evaluate("ListInvoices", {"contract_id": "other"})["invoices"] == []
    ledger.refuse("ListInvoices", {"status": 3}, "invalid_argument")


def test_resent_readings_of_a_closed_period_are_duplicates_new_ones_period_closed(
    ledger: ChaincodeLedger,
) -> None:
    ledger.submit("RecordUsage", {"messages": [signed_message(KEY, [reading("r1"), reading("r2")])]})
    _close(ledger)
    after = NOV_END + dt.timedelta(hours=1)
    dec = "2026-12-01T08:00:00+01:00"
    resent = signed_message(KEY, [reading("r1"), reading("r2")], message_id="again")
    out = ledger.submit("RecordUsage", {"messages": [resent]}, at=after)
    assert out["results"][0]["error"]["code"] == "duplicate_reading"
    mixed = signed_message(KEY, [reading("r1"), reading("d1", timestamp=dec)], message_id="mixed")
    out = ledger.submit("RecordUsage", {"messages": [mixed]}, at=after + dt.timedelta(hours=8))
    assert out["results"][0] == {
        "message_id": "mixed",
        "device_id": DEVICE_ID,
        "status": "accepted",
        "accepted": 1,
        "duplicates": ["r1"],
    }
    late = signed_message(
        KEY, [reading("r1"), reading("r3"), reading("d2", timestamp=dec)], message_id="late"
    )
    out = ledger.submit("RecordUsage", {"messages": [late]}, at=after + dt.timedelta(hours=8))
    assert out["results"][0]["error"]["code"] == "period_closed"
    assert out["results"][0]["error"]["reading_ids"] == ["r3"]
    assert ledger.world.write_log[-1][1] == []


def test_list_invoices_of_a_contract_whose_id_prefixes_another() -> None:
    ledger = ChaincodeLedger()
    key_b = make_device_key(2)
    active_contract(ledger, KEY, id="ctr-1")
    active_contract(ledger, key_b, id="ctr-1-b", assets=["dev-b"])
    for cid in ("ctr-1", "ctr-1-b"):
        _close(ledger, {"contract_id": cid, "period": "2026-11"})
    ledger.now = NOV_END + dt.timedelta(days=1)
    ledger.submit("Dispute", {"invoice_id": "inv-ctr-1-b-2026-11", "reason": "x"}, org=CUSTOMER)
    ledger.submit("IssueCreditNote", {"invoice_id": "inv-ctr-1-b-2026-11", "reason": "x"})
    mine = ledger.evaluate("ListInvoices", {"contract_id": "ctr-1"})["invoices"]
    assert [i["id"] for i in mine] == ["inv-ctr-1-2026-11"]
    other = ledger.evaluate("ListInvoices", {"contract_id": "ctr-1-b"})["invoices"]
    assert [i["id"] for i in other] == ["cn-inv-ctr-1-b-2026-11-1", "inv-ctr-1-b-2026-11"]
    everything = ledger.evaluate("ListInvoices", {})["invoices"]
    assert [i["id"] for i in everything] == [
        "cn-inv-ctr-1-b-2026-11-1",
        "inv-ctr-1-2026-11",
        "inv-ctr-1-b-2026-11",
    ]
