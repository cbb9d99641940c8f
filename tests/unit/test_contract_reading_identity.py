"""A reading's identity is (device, reading id): two devices on one contract may both send `r-000001`,
a re-sent reading is a duplicate, the same (device, id) with other content is `reading_conflict` (issue
13, item 1). Contracts recorded before the device joined the reading key (no `reading_key_version`) keep
the old layout."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from chaincode import keys
from chaincode.model import canonical
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.unit

DEV_A, DEV_B = "mri-berlin-01", "mri-berlin-02"
KEY_A, KEY_B = make_device_key("dev-a"), make_device_key("dev-b")
PERIOD = "2026-11"
# a per-unit plan: 10.00 per scan, nothing else, no tax, so the invoice shows every reading
PLAN = {
    "charges": [{"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "10.00"}],
    "minimum_commitment": None,
    "tax": None,
}


def two_device_ledger(*, legacy: bool = False, version: Any = None) -> ChaincodeLedger:
    """Two assets (own keys) on one ACTIVE contract; with `legacy` the contract record is rewritten as the
    chaincode before issue 13 wrote it (no `reading_key_version`), as an existing ledger holds it; with
    `version` the marker is set to that value (a contract from some other chaincode)."""
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(KEY_A, DEV_A))
    ledger.submit("RegisterAsset", sample_asset(KEY_B, DEV_B, "MRI scanner, Berlin clinic, wing B"))
    ledger.submit("ProposeContract", sample_contract(assets=[DEV_A, DEV_B], **PLAN))
    ledger.submit("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER)
    if legacy or version is not None:
        key = keys.contract(CONTRACT_ID)
        record = json.loads(ledger.world.state[key].value)
        del record["reading_key_version"]
        if version is not None:
            record["reading_key_version"] = version
        ledger.world.state[key] = dataclasses.replace(ledger.world.state[key], value=canonical(record))
    return ledger


def record(ledger: ChaincodeLedger, *messages: dict[str, Any]) -> dict[str, Any]:
    return ledger.submit("RecordUsage", {"messages": list(messages)})


def msg(key: Any, device: str, mid: str, *readings: dict[str, Any]) -> dict[str, Any]:
    return signed_message(key, list(readings), device_id=device, message_id=mid)


def rejected_alone(ledger: ChaincodeLedger, message: dict[str, Any], code: str) -> dict[str, Any]:
    """Submit one message; it must be rejected with `code` and the transaction must write nothing."""
    before = {k: v.value for k, v in ledger.world.state.items()}
    out = record(ledger, message)
    (result,) = out["results"]
    assert result["status"] == "rejected", result
    assert result["error"]["code"] == code, result["error"]
    assert ledger.world.write_log[-1][1] == []
    assert {k: v.value for k, v in ledger.world.state.items()} == before
    return result["error"]


def close(ledger: ChaincodeLedger) -> dict[str, Any]:
    return ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": PERIOD}, at=NOV_END)


def test_two_devices_with_the_same_reading_ids_are_both_recorded_and_billed() -> None:
    ledger = two_device_ledger()
    a = record(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001"), reading("r-000002")))
    b = record(ledger, msg(KEY_B, DEV_B, "m-1", reading("r-000001"), reading("r-000002", quantity="30")))
    assert [r["status"] for r in a["results"] + b["results"]] == ["accepted", "accepted"]
    assert (a["accepted"], b["accepted"]) == (2, 2)
    assert b["results"][0]["duplicates"] == []
    stored = ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_B, "r-000002"))
    assert (stored["device_id"], stored["quantity"]) == (DEV_B, "30")
    assert ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000002"))["quantity"] == "1"
    readings = ledger.evaluate("GetReadings", {"contract_id": CONTRACT_ID, "period": PERIOD})["readings"]
    assert [(r["device_id"], r["id"]) for r in readings] == [
        (DEV_A, "r-000001"), (DEV_A, "r-000002"), (DEV_B, "r-000001"), (DEV_B, "r-000002"),
    ]
    invoice = close(ledger)
    # 1 + 1 + 1 + 30 scans at 10.00: 330.00 (the old key layout dropped device B: 20.00)
    assert (invoice["readings"], invoice["total"]) == (4, "330.00")


def test_two_devices_with_the_same_reading_ids_in_one_transaction() -> None:
    ledger = two_device_ledger()
    out = record(
        ledger,
        msg(KEY_A, DEV_A, "m-1", reading("r-000001"), reading("r-000002")),
        msg(KEY_B, DEV_B, "m-1", reading("r-000001"), reading("r-000002")),
    )
    assert [(r["device_id"], r["status"], r["accepted"]) for r in out["results"]] == [
        (DEV_A, "accepted", 2), (DEV_B, "accepted", 2),
    ]
    assert ledger.state(keys.usage_batch(CONTRACT_ID, PERIOD, out["tx_id"]))["readings"] == 4
    assert close(ledger)["total"] == "40.00"


def test_a_resent_reading_with_the_same_content_stays_a_duplicate() -> None:
    ledger = two_device_ledger()
    record(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001")))
    record(ledger, msg(KEY_B, DEV_B, "m-1", reading("r-000001")))
    # device B lost the answer and resends under a new message id, with one new reading
    out = record(ledger, msg(KEY_B, DEV_B, "m-2", reading("r-000001"), reading("r-000002")))
    assert (out["results"][0]["accepted"], out["results"][0]["duplicates"]) == (1, ["r-000001"])
    error = rejected_alone(ledger, msg(KEY_B, DEV_B, "m-3", reading("r-000001")), "duplicate_reading")
    assert error["reading_ids"] == ["r-000001"]


def test_same_device_and_id_with_other_content_is_reading_conflict_and_writes_nothing() -> None:
    ledger = two_device_ledger()
    record(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001"), reading("r-000002")))
    changed = msg(
        KEY_A, DEV_A, "m-2", reading("r-000001"), reading("r-000002", quantity="5"), reading("r-000003")
    )
    error = rejected_alone(ledger, changed, "reading_conflict")
    assert error["reading_ids"] == ["r-000002"]
    assert error["readings"] == [
        {"reading_id": "r-000002", "code": "reading_conflict",
         "message": f"reading r-000002 of {DEV_A} was already recorded with other content"},
    ]
    # nothing of the message: not the new r-000003, not the message itself; the first r-000002 stands
    assert ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000003")) is None
    assert ledger.world.value(keys.usage_message(DEV_A, "m-2")) is None
    assert ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000002"))["quantity"] == "1"
    # every content field counts: metric, timestamp, unit_price
    for other in (
        reading("r-000001", metric="magnet_hours"),
        reading("r-000001", timestamp="2026-11-03T09:16:00+01:00"),
        reading("r-000001", unit_price="1.00"),
    ):
        rejected_alone(ledger, msg(KEY_A, DEV_A, "m-x", other), "reading_conflict")
    assert close(ledger)["total"] == "20.00"


def test_reading_conflict_inside_one_transaction() -> None:
    ledger = two_device_ledger()
    out = record(
        ledger,
        msg(KEY_A, DEV_A, "m-1", reading("r-000001")),
        msg(KEY_A, DEV_A, "m-2", reading("r-000001", quantity="9"), reading("r-000002")),
        msg(KEY_A, DEV_A, "m-3", reading("r-000001")),
    )
    assert [r["status"] for r in out["results"]] == ["accepted", "rejected", "rejected"]
    assert [r["error"]["code"] for r in out["results"][1:]] == ["reading_conflict", "duplicate_reading"]
    assert ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000002")) is None
    assert ledger.state(keys.usage_batch(CONTRACT_ID, PERIOD, out["tx_id"]))["readings"] == 1


def test_new_contracts_carry_the_reading_key_version_which_cannot_be_proposed() -> None:
    ledger = two_device_ledger()
    contract = ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    assert contract["reading_key_version"] == keys.READING_KEY_VERSION == 2
    body = sample_contract(assets=[DEV_A, DEV_B], **PLAN)
    # the same proposal again is still the idempotent answer, not a conflict
    assert ledger.submit("ProposeContract", body)["reading_key_version"] == 2
    fresh = ChaincodeLedger()
    fresh.submit("RegisterAsset", sample_asset(KEY_A, DEV_A))
    fresh.refuse(
        "ProposeContract", sample_contract(assets=[DEV_A], reading_key_version=1), "invalid_argument",
        org=PROVIDER,
    )


def test_a_contract_without_the_marker_keeps_the_old_layout() -> None:
    """An existing ledger: its readings sit at reading~{contract}~{period}~{reading_id}; they are still found
    (a resend is a duplicate, not a second reading), new ones are written there too, and a reading id is
    unique per contract for such a contract: a second device's id is a conflict, never a silent drop."""
    ledger = two_device_ledger(legacy=True)
    assert "reading_key_version" not in ledger.evaluate("GetContract", {"id": CONTRACT_ID})
    record(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001"), reading("r-000002")))
    legacy_key = keys.reading_v1(CONTRACT_ID, PERIOD, "r-000001")
    assert ledger.state(legacy_key)["device_id"] == DEV_A
    assert ledger.state(keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000001")) is None
    rejected_alone(ledger, msg(KEY_A, DEV_A, "m-2", reading("r-000001")), "duplicate_reading")
    rejected_alone(ledger, msg(KEY_A, DEV_A, "m-3", reading("r-000001", quantity="4")), "reading_conflict")
    error = rejected_alone(ledger, msg(KEY_B, DEV_B, "m-1", reading("r-000001")), "reading_conflict")
    assert error["reading_ids"] == ["r-000001"]
    assert record(ledger, msg(KEY_B, DEV_B, "m-2", reading("b-000001")))["accepted"] == 1
    assert ledger.state(keys.reading_v1(CONTRACT_ID, PERIOD, "b-000001"))["device_id"] == DEV_B
    readings = ledger.evaluate("GetReadings", {"contract_id": CONTRACT_ID, "period": PERIOD})["readings"]
    assert [r["id"] for r in readings] == ["b-000001", "r-000001", "r-000002"]
    assert close(ledger)["total"] == "30.00"


def test_an_unreadable_record_under_the_key_is_a_conflict_not_a_duplicate() -> None:
    ledger = two_device_ledger()
    record(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001")))
    key = keys.reading(CONTRACT_ID, PERIOD, DEV_A, "r-000001")
    ledger.world.state[key] = dataclasses.replace(ledger.world.state[key], value=b"not json")
    rejected_alone(ledger, msg(KEY_A, DEV_A, "m-2", reading("r-000001")), "reading_conflict")


@pytest.mark.parametrize("version", [3, "2", 0, True])
def test_a_contract_with_an_unknown_reading_key_version_is_refused_not_guessed(version: Any) -> None:
    ledger = two_device_ledger(version=version)
    error = rejected_alone(ledger, msg(KEY_A, DEV_A, "m-1", reading("r-000001")), "invalid_argument")
    assert "reading_key_version" in error["message"]
