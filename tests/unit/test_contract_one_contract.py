"""RecordUsage records one contract per transaction when it holds several messages (ADR 0028)."""

from __future__ import annotations

from chaincode.errors import ChaincodeError
from tests.helpers.chaincode import (
    PROVIDER,
    ChaincodeLedger,
    DeviceKey,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

KEY_A, KEY_B = make_device_key("one-a"), make_device_key("one-b")


def _two_contracts() -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY_A)
    active_contract(ledger, KEY_B, **{"id": "ctr-b", "assets": ["press-b"]})
    return ledger


def _msg(key: DeviceKey, device: str, mid: str) -> dict[str, object]:
    return signed_message(key, [reading(f"{mid}-r1")], device_id=device, message_id=mid)


def test_messages_of_two_contracts_in_one_transaction_are_refused_whole() -> None:
    ledger = _two_contracts()
    body = {"messages": [_msg(KEY_A, "mri-berlin-01", "a-1"), _msg(KEY_B, "press-b", "b-1")]}
    err = ledger.refuse("RecordUsage", body, "mixed_contracts")  # asserts the world did not change
    assert isinstance(err, ChaincodeError)
    assert err.details["contract_ids"] == ["ctr-b", "ctr-mri-001"]


def test_an_unregistered_device_among_several_messages_is_refused_whole() -> None:
    ledger = _two_contracts()
    body = {"messages": [_msg(KEY_A, "mri-berlin-01", "a-1"), _msg(KEY_A, "no-such-device", "x-1")]}
    err = ledger.refuse("RecordUsage", body, "mixed_contracts")
    assert err.details["unbound"] == ["no-such-device"]


def test_several_messages_of_one_contract_and_one_message_alone_are_recorded() -> None:
    ledger = _two_contracts()
    several = [_msg(KEY_A, "mri-berlin-01", f"a-{i}") for i in range(3)]
    out = ledger.submit("RecordUsage", {"messages": several})
    assert out["accepted"] == 3
    # one message of an unknown device is judged alone, as before: rejected in its result, no refusal
    alone = ledger.submit("RecordUsage", {"messages": [_msg(KEY_A, "no-such-device", "x-1")]}, org=PROVIDER)
    assert alone["results"][0]["error"]["code"] == "unknown_asset"
