"""Late readings (ADR 0048) and shared assets with bookings (ADR 0049), on the contract itself.

Hand-computed numbers use the API.md plan: platform 500.00 flat, scans graduated 85.00 (first 100) then
70.00, magnet hours 12.50 per unit, minimum commitment 2000.00, tax 19 %, Europe/Berlin.
"""

from __future__ import annotations

import datetime as dt

import pytest

from chaincode import keys
from chaincode.tx.bookings import booking_key
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    PROVIDER,
    ChaincodeLedger,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.unit
NEXT = {"policy": "next_invoice", "max_lateness": "P35D"}
DEC_2 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DEC_5 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
DEC_7 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
JAN_2 = dt.datetime(2027, 1, 2, 12, 0, tzinfo=dt.UTC)
CLINIC_B = "ClinicBMSP"


def _active(ledger: ChaincodeLedger, **overrides: object) -> None:
    key = make_device_key()
    ledger.submit("RegisterAsset", sample_asset(key), org=PROVIDER)
    ledger.submit("ProposeContract", sample_contract(**overrides), org=PROVIDER)
    ledger.submit("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER)


def _usage(ledger: ChaincodeLedger, mid: str, readings: list, *, at: dt.datetime,
           device: str = DEVICE_ID) -> dict:
    msg = signed_message(make_device_key(), readings, device_id=device, message_id=mid)
    return ledger.submit("RecordUsage", {"messages": [msg]}, at=at)["results"][0]


def _close(ledger: ChaincodeLedger, period: str, at: dt.datetime, contract: str = CONTRACT_ID) -> dict:
    return ledger.submit("CloseBillingPeriod", {"contract_id": contract, "period": period}, at=at)


# --- late readings -------------------------------------------------------------------------------------


def test_policy_is_checked_at_proposal() -> None:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(make_device_key()), org=PROVIDER)
    for bad in ({"policy": "later"}, {"policy": "next_invoice"},
                {"policy": "next_invoice", "max_lateness": "35"},
                {"policy": "next_invoice", "max_lateness": "P0D"},
                {"policy": "reject", "max_lateness": "P1D"}, "next_invoice"):
        err = ledger.refuse("ProposeContract", sample_contract(late_readings=bad), "invalid_argument")
        assert err.details["field"] == "late_readings"


def test_without_a_policy_a_late_reading_is_period_closed() -> None:
    ledger = ChaincodeLedger()
    _active(ledger)
    first = _usage(ledger, "m1", [reading("r1", timestamp="2026-11-10T10:00:00+01:00")], at=MID)
    assert first["accepted"] == 1
    _close(ledger, "2026-11", DEC_2)
    res = _usage(ledger, "m2", [reading("r2", timestamp="2026-11-28T10:00:00+01:00")], at=DEC_5)
    assert res["error"]["code"] == "period_closed" and res["error"]["reading_ids"] == ["r2"]


MID = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_late_readings_are_billed_on_the_next_invoice_at_the_old_period_s_price() -> None:
    ledger = ChaincodeLedger()
    _active(ledger, late_readings=NEXT)
    nov = [reading(f"n{i}", timestamp=f"2026-11-{10 + i:02d}T10:00:00+01:00") for i in range(10)]
    assert _usage(ledger, "m-nov", nov, at=MID)["accepted"] == 10
    november = _close(ledger, "2026-11", DEC_2)
    # 10 scans x 85.00 = 850.00 + platform 500.00 = 1350.00 -> true-up 650.00 -> 2000.00, tax 380.00
    assert (november["subtotal"], november["tax"], november["total"]) == ("2000.00", "380.00", "2380.00")

    late = [reading("l1", timestamp="2026-11-28T10:00:00+01:00"),
            reading("l2", timestamp="2026-11-29T10:00:00+01:00"),
            reading("l3", timestamp="2026-11-30T23:30:00+01:00"),
            reading("l4", "magnet_hours", "1.5", "2026-11-30T11:00:00+01:00"),
            reading("l5", "magnet_hours", "1.5", "2026-11-30T12:00:00+01:00")]
    assert _usage(ledger, "m-late", late, at=DEC_5)["accepted"] == 5
    stored = ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, "l1"))
    assert (stored["period"], stored["billed_in"]) == ("2026-11", "2026-12")
    dec = [reading(f"d{i}", timestamp=f"2026-12-{3 + i:02d}T10:00:00+01:00") for i in range(4)]
    assert _usage(ledger, "m-dec", dec, at=DEC_7)["accepted"] == 4
    # a resend of a late reading is a duplicate, never billed twice
    again = _usage(ledger, "m-late-again", late[:1], at=DEC_7)
    assert again["error"]["code"] == "duplicate_reading"
    # a reading more than 35 days old (1 Nov 10:00 -> 7 Dec 12:00 is 36 days): refused, nothing written
    msg = signed_message(make_device_key(), [reading("old", timestamp="2026-11-01T10:00:00+01:00")],
                         message_id="m-old")
    res = ledger.submit("RecordUsage", {"messages": [msg]}, at=DEC_7)["results"][0]
    assert res["error"]["code"] == "reading_too_late" and res["error"]["reading_ids"] == ["old"]
    assert res["error"]["max_lateness"] == "P35D"

    assert ledger.evaluate("GetInvoice", {"id": november["id"]}) == november  # never changes
    preview = ledger.evaluate("GetUsage", {"contract_id": CONTRACT_ID, "period": "2026-12"}, at=JAN_2)["cost"]
    december = _close(ledger, "2026-12", JAN_2)
    assert {k: preview[k] for k in ("lines", "subtotal", "tax", "total")} == {
        k: december[k] for k in ("lines", "subtotal", "tax", "total")}  # the cost to date is the invoice
    late_lines = [ln for ln in december["lines"] if "late_of" in ln]
    assert late_lines == [
        {"charge_id": "scans", "model": "graduated", "metric": "scan", "quantity": "3", "amount": "255.00",
         "late_of": "2026-11", "description": "late usage 2026-11"},
        {"charge_id": "hours", "model": "per_unit", "metric": "magnet_hours", "quantity": "3.0",
         "amount": "37.50", "late_of": "2026-11", "description": "late usage 2026-11"},
    ]
    # December itself: 500.00 + 4 x 85.00 = 840.00 -> true-up 1160.00 -> 2000.00; plus late 292.50
    # = 2292.50; tax 19 % = 435.575 -> 435.58; total 2728.08
    assert (december["subtotal"], december["tax"], december["total"]) == ("2292.50", "435.58", "2728.08")
    assert (december["readings"], december["late_readings"]) == (4, 5)
    late_read = ledger.evaluate("GetLateReadings", {"contract_id": CONTRACT_ID, "period": "2026-12"})
    assert sorted(r["id"] for r in late_read["readings"]) == ["l1", "l2", "l3", "l4", "l5"]


# --- shared assets and bookings ------------------------------------------------------------------------

SHARED = "mri-shared"
A, B = "ctr-clinic-a", "ctr-clinic-b"


def _shared_ledger() -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", {**sample_asset(make_device_key(), SHARED), "shared": True}, org=PROVIDER)
    for cid, customer in ((A, CUSTOMER), (B, CLINIC_B)):
        contract = sample_contract(id=cid, customer=customer, assets=[SHARED])
        ledger.submit("ProposeContract", contract, org=PROVIDER)
        ledger.submit("AcceptContract", {"contract_id": cid}, org=customer)
    return ledger


def _book(ledger: ChaincodeLedger, bid: str, cid: str, start: str, end: str, customer: str) -> dict:
    ledger.submit("ProposeBooking", {"asset_id": SHARED, "id": bid, "contract_id": cid, "start": start,
                                     "end": end}, org=PROVIDER)
    return ledger.submit("AcceptBooking", {"asset_id": SHARED, "id": bid}, org=customer)


def test_a_shared_asset_serves_two_contracts_by_bookings() -> None:
    ledger = _shared_ledger()
    assert ledger.state(keys.asset(SHARED))["contract_id"] is None  # never bound to one contract
    a = _book(ledger, "bk-a", A, "2026-11-02T00:00:00+01:00", "2026-11-04T00:00:00+01:00", CUSTOMER)
    assert a["status"] == "ACTIVE"
    assert sorted(ledger.endorsement(booking_key(SHARED, "bk-a"))) == sorted([PROVIDER, CUSTOMER])
    _book(ledger, "bk-b", B, "2026-11-04T00:00:00+01:00", "2026-11-05T00:00:00+01:00", CLINIC_B)
    ra = _usage(ledger, "ma", [reading("ra1", timestamp="2026-11-03T09:00:00+01:00"),
                               reading("ra2", timestamp="2026-11-02T09:00:00+01:00")], at=MID, device=SHARED)
    rb = _usage(ledger, "mb", [reading("rb1", timestamp="2026-11-04T09:00:00+01:00")], at=MID, device=SHARED)
    assert (ra["accepted"], rb["accepted"]) == (2, 1)
    ia, ib = _close(ledger, "2026-11", DEC_2, A), _close(ledger, "2026-11", DEC_2, B)
    scans = {i["contract_id"]: next(ln for ln in i["lines"] if ln["charge_id"] == "scans") for i in (ia, ib)}
    assert (scans[A]["quantity"], scans[A]["amount"]) == ("2", "170.00")
    assert (scans[B]["quantity"], scans[B]["amount"]) == ("1", "85.00")
    # outside any booking, or straddling two contracts' bookings: refused with a stable code
    out = _usage(ledger, "mx", [reading("rx", timestamp="2026-11-06T09:00:00+01:00")], at=MID, device=SHARED)
    assert out["error"]["code"] == "no_booking" and out["error"]["reading_ids"] == ["rx"]
    straddling = [reading("ry1", timestamp="2026-11-03T09:00:00+01:00"),
                  reading("ry2", timestamp="2026-11-04T09:00:00+01:00")]
    mixed = _usage(ledger, "my", straddling, at=MID, device=SHARED)
    assert mixed["error"]["code"] == "booking_mismatch"


def test_bookings_refuse_bad_input_and_write_nothing() -> None:
    ledger = _shared_ledger()
    _book(ledger, "bk-a", A, "2026-11-02T00:00:00+01:00", "2026-11-04T00:00:00+01:00", CUSTOMER)

    def body(bid: str = "bk-x", cid: str = B, start: str = "2026-11-03T12:00:00+01:00",
             end: str = "2026-11-05T00:00:00+01:00") -> dict:
        return {"asset_id": SHARED, "id": bid, "contract_id": cid, "start": start, "end": end}

    err = ledger.refuse("ProposeBooking", body(), "booking_overlap")
    assert B not in err.message and A not in err.message  # the other booking's contract is not named
    ledger.refuse("ProposeBooking", body(start="2026-10-30T00:00:00+01:00"), "booking_outside_contract")
    ledger.refuse("ProposeBooking", body(end="2026-11-01T00:00:00+01:00", start="2026-11-05T00:00:00+01:00"),
                  "invalid_argument")
    ledger.refuse("ProposeBooking", body(cid="ctr-nope"), "unknown_contract")
    ledger.refuse("ProposeBooking", {**body(), "asset_id": "nope"}, "unknown_asset")
    ledger.refuse("ProposeBooking", body(start="2026-11-10T00:00:00+01:00", end="2026-11-11T00:00:00+01:00"),
                  "forbidden", org="OtherMSP")
    ledger.refuse("ProposeBooking", {**body(), "id": "bk-a", "contract_id": A}, "booking_exists")
    ledger.refuse("AcceptBooking", {"asset_id": SHARED, "id": "bk-nope"}, "unknown_booking", org=CLINIC_B)
    # two proposals for one slot may wait; the second to be accepted is refused
    for bid, cid in (("bk-1", A), ("bk-2", B)):
        ledger.submit("ProposeBooking", body(bid=bid, cid=cid, start="2026-11-20T00:00:00+01:00",
                                             end="2026-11-21T00:00:00+01:00"), org=PROVIDER)
    ledger.refuse("AcceptBooking", {"asset_id": SHARED, "id": "bk-1"}, "forbidden", org=PROVIDER)
    ledger.refuse("AcceptBooking", {"asset_id": SHARED, "id": "bk-1"}, "unknown_booking", org=CLINIC_B)
    ledger.submit("AcceptBooking", {"asset_id": SHARED, "id": "bk-1"}, org=CUSTOMER)
    ledger.refuse("AcceptBooking", {"asset_id": SHARED, "id": "bk-2"}, "booking_overlap", org=CLINIC_B)
    # an asset that is not shared cannot be booked
    ledger.submit("RegisterAsset", sample_asset(make_device_key(), "solo"), org=PROVIDER)
    ledger.submit("ProposeContract", sample_contract(id="ctr-solo", assets=["solo"]), org=PROVIDER)
    ledger.submit("AcceptContract", {"contract_id": "ctr-solo"}, org=CUSTOMER)
    ledger.refuse("ProposeBooking", {**body(cid="ctr-solo"), "asset_id": "solo"}, "asset_not_shared")
    bad_asset = {**sample_asset(make_device_key(), "x"), "shared": "yes"}
    ledger.refuse("RegisterAsset", bad_asset, "invalid_argument")
