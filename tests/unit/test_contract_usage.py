"""RecordUsage: per-message verdicts, duplicates, forged messages, batch aggregates, queries."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from chaincode import keys, rating
from chaincode.model import canonical
from tests.helpers.chaincode import (
    AUDITOR,
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    PROVIDER,
    ChaincodeLedger,
    DeviceKey,
    active_contract,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    sign,
    signed_message,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()


def _record(ledger: ChaincodeLedger, *messages: dict, org: str = PROVIDER) -> dict:
    return ledger.submit("RecordUsage", {"messages": list(messages)}, org=org)


def _rejected(ledger: ChaincodeLedger, message: dict, code: str, org: str = PROVIDER) -> dict:
    """Submit one message, assert it is rejected with `code` and that the transaction wrote nothing."""
    before = dict(ledger.world.state)
    out = _record(ledger, message, org=org)
    (result,) = out["results"]
    assert result["status"] == "rejected", result
    assert result["error"]["code"] == code, result["error"]
    assert out["accepted"] == 0
    assert ledger.world.write_log[-1][1] == []
    assert ledger.world.state == before
    return result["error"]


def test_accepted_message_writes_readings_message_and_one_batch(ledger: ChaincodeLedger) -> None:
    msg = signed_message(
        KEY, [reading("r1"), reading("r2", "magnet_hours", "0.75", "2026-11-03T09:59:00+01:00")]
    )
    out = _record(ledger, msg)
    tx_id = ledger.last_stub.tx_id
    assert out == {
        "results": [
            {
                "message_id": "msg-1",
                "device_id": DEVICE_ID,
                "status": "accepted",
                "accepted": 2,
                "duplicates": [],
            }
        ],
        "accepted": 2,
        "tx_id": tx_id,
    }
    stored = ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, "r2"))
    assert stored == {
        "id": "r2",
        "contract_id": CONTRACT_ID,
        "period": "2026-11",
        "device_id": DEVICE_ID,
        "message_id": "msg-1",
        "metric": "magnet_hours",
        "quantity": "0.75",
        "timestamp": "2026-11-03T09:59:00+01:00",
        "tx_id": tx_id,
    }
    assert ledger.world.value(keys.usage_message(DEVICE_ID, "msg-1")) == canonical(msg)
    batch = ledger.state(keys.usage_batch(CONTRACT_ID, "2026-11", tx_id))
    assert batch["readings"] == 2
    assert batch["metrics"]["scan"]["sum"] == "1"
    assert batch["metrics"]["magnet_hours"]["sum"] == "0.75"
    expected_digest = rating.combine_digests(
        rating.reading_hash(ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, r)))
        for r in ("r1", "r2")
    )
    assert batch["digest"] == rating.digest_hex(expected_digest)
    assert ledger.last_event() == (
        "UsageRecorded",
        {"batches": [{"contract_id": CONTRACT_ID, "period": "2026-11", "readings": 2}]},
    )
    # usage writes get no key-level policy: either party's peer can endorse them
    assert all(ledger.endorsement(k) is None for k, _ in ledger.world.write_log[-1][1])


def test_customer_may_record_usage_but_not_the_auditor(ledger: ChaincodeLedger) -> None:
    assert _record(ledger, signed_message(KEY, [reading("r1")]), org=CUSTOMER)["accepted"] == 1
    _rejected(ledger, signed_message(KEY, [reading("r2")], message_id="m2"), "forbidden", org=AUDITOR)


def test_one_bad_message_does_not_fail_the_good_ones(ledger: ChaincodeLedger) -> None:
    good = signed_message(KEY, [reading("r1")], message_id="good")
    forged = {**signed_message(KEY, [reading("r2")], message_id="forged")}
    forged["readings"][0]["quantity"] = "1000"
    out = _record(ledger, good, forged)
    assert [r["status"] for r in out["results"]] == ["accepted", "rejected"]
    assert out["results"][1]["error"]["code"] == "bad_signature"
    assert out["accepted"] == 1
    assert ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, "r2")) is None
    assert ledger.world.value(keys.usage_message(DEVICE_ID, "forged")) is None


def _forgeries() -> list[tuple[str, object]]:
    other = make_device_key(99)
    base = signed_message(KEY, [reading("r1")])
    der = base64.b64decode(base["signature"])
    return [
        ("tampered", "tamper"),
        ("other key", sign(other, base)["signature"]),
        ("missing", None),
        ("empty", ""),
        ("not base64", "!!!not base64!!!"),
        ("not DER", base64.b64encode(b"\x30\x02garbage").decode()),
        ("truncated DER", base64.b64encode(der[:-3]).decode()),
        ("number", 12),
    ]


@pytest.mark.parametrize(("name", "signature"), _forgeries())
def test_forged_messages_are_bad_signature(ledger: ChaincodeLedger, name: str, signature: object) -> None:
    msg = signed_message(KEY, [reading("r1")])
    if signature == "tamper":
        msg["readings"][0]["quantity"] = "2"
    elif signature is None:
        del msg["signature"]
    else:
        msg["signature"] = signature
    _rejected(ledger, msg, "bad_signature")


def test_signature_covers_fields_outside_readings(ledger: ChaincodeLedger) -> None:
    msg = signed_message(KEY, [reading("r1")])
    msg["message_id"] = "msg-renamed"
    _rejected(ledger, msg, "bad_signature")


def test_unknown_device(ledger: ChaincodeLedger) -> None:
    _rejected(ledger, signed_message(KEY, [reading("r1")], device_id="ghost"), "unknown_asset")


def test_asset_without_active_contract() -> None:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(KEY))
    _rejected(ledger, signed_message(KEY, [reading("r1")]), "contract_not_active")
    ledger.submit("ProposeContract", sample_contract())  # proposed is not active either
    _rejected(ledger, signed_message(KEY, [reading("r1")]), "contract_not_active")


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (reading("x", metric="coffee"), "unknown_metric"),
        (reading("x", quantity="-1"), "invalid_quantity"),
        (reading("x", quantity="1e3"), "invalid_quantity"),
        (reading("x", quantity="1000000000000.1"), "invalid_quantity"),
        (reading("x", quantity="0.1234567890123"), "invalid_quantity"),
        (reading("x", quantity=1), "invalid_quantity"),
        (reading("x", quantity=" 1"), "invalid_quantity"),
        (reading("x", timestamp="2026-11-03 09:15:00"), "invalid_timestamp"),
        (reading("x", timestamp="2026-11-03T09:15:00"), "invalid_timestamp"),
        (reading("x", timestamp=1700000000), "invalid_timestamp"),
        (reading("x", timestamp="2026-10-31T23:59:59+01:00"), "timestamp_outside_contract"),
        (reading("x", timestamp="2026-11-15T12:05:01Z"), "timestamp_in_future"),
        (reading("x", unit_price="-0.5"), "invalid_quantity"),
        ({"id": "x", "metric": "scan"}, "invalid_quantity"),
        ("not an object", "invalid_argument"),
        ({"metric": "scan", "quantity": "1", "timestamp": "2026-11-03T09:15:00+01:00"}, "invalid_argument"),
    ],
)
def test_bad_reading_rejects_the_whole_message(ledger: ChaincodeLedger, bad: object, code: str) -> None:
    msg = signed_message(KEY, [reading("ok-1"), bad, reading("ok-2")])
    error = _rejected(ledger, msg, code)
    if isinstance(bad, dict) and "id" in bad:
        assert error["reading_ids"] == ["x"]


def test_five_minutes_of_clock_skew_are_tolerated(ledger: ChaincodeLedger) -> None:
    msg = signed_message(KEY, [reading("r1", timestamp="2026-11-15T12:05:00Z")])
    assert _record(ledger, msg)["accepted"] == 1


def test_error_names_every_reading_with_the_first_code(ledger: ChaincodeLedger) -> None:
    msg = signed_message(
        KEY, [reading("a", metric="coffee"), reading("b", quantity="-1"), reading("c", metric="tea")]
    )
    error = _rejected(ledger, msg, "unknown_metric")
    assert error["reading_ids"] == ["a", "c"]
    assert [(r["reading_id"], r["code"]) for r in error["readings"]] == [
        ("a", "unknown_metric"),
        ("b", "invalid_quantity"),
        ("c", "unknown_metric"),
    ]


def test_same_reading_id_twice_in_a_message(ledger: ChaincodeLedger) -> None:
    error = _rejected(ledger, signed_message(KEY, [reading("r1"), reading("r1")]), "invalid_argument")
    assert error["reading_ids"] == ["r1"]


def test_reading_after_contract_end() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger, KEY, end="2026-11-10")
    assert (
        _record(ledger, signed_message(KEY, [reading("in", timestamp="2026-11-10T23:59:59+01:00")]))[
            "accepted"
        ]
        == 1
    )
    _rejected(
        ledger,
        signed_message(KEY, [reading("out", timestamp="2026-11-11T00:00:00+01:00")], message_id="m2"),
        "timestamp_outside_contract",
    )


def test_dynamic_metric_needs_unit_price() -> None:
    ledger = ChaincodeLedger()
    contract = sample_contract()
    contract["metrics"]["energy"] = {"aggregation": "sum", "unit": "kWh"}
    contract["charges"].append({"id": "spot", "model": "dynamic", "metric": "energy"})
    active_contract(ledger, KEY, metrics=contract["metrics"], charges=contract["charges"])
    _rejected(ledger, signed_message(KEY, [reading("e1", "energy", "10")]), "missing_unit_price")
    ok = signed_message(KEY, [reading("e1", "energy", "10", unit_price="0.25")], message_id="m2")
    tx = _record(ledger, ok)["tx_id"]
    assert ledger.state(keys.usage_batch(CONTRACT_ID, "2026-11", tx))["dynamic"] == {"spot": "2.50"}
    assert ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, "e1"))["unit_price"] == "0.25"


def test_duplicates_are_skipped_and_listed(ledger: ChaincodeLedger) -> None:
    _record(ledger, signed_message(KEY, [reading("r1"), reading("r2")]))
    # the device lost the answer and resends under a new message id, with one new reading
    again = signed_message(KEY, [reading("r1"), reading("r2"), reading("r3")], message_id="msg-2")
    out = _record(ledger, again)
    assert out["results"][0] == {
        "message_id": "msg-2",
        "device_id": DEVICE_ID,
        "status": "accepted",
        "accepted": 1,
        "duplicates": ["r1", "r2"],
    }
    tx = out["tx_id"]
    assert ledger.state(keys.usage_batch(CONTRACT_ID, "2026-11", tx))["readings"] == 1
    assert ledger.state(keys.reading(CONTRACT_ID, "2026-11", DEVICE_ID, "r1"))["message_id"] == "msg-1"


def test_all_duplicates_is_duplicate_reading(ledger: ChaincodeLedger) -> None:
    msg = signed_message(KEY, [reading("r1"), reading("r2")])
    _record(ledger, msg)
    error = _rejected(ledger, msg, "duplicate_reading")  # the very same message replayed
    assert error["reading_ids"] == ["r1", "r2"]
    _rejected(ledger, signed_message(KEY, [reading("r2")], message_id="m9"), "duplicate_reading")


def test_duplicates_within_one_transaction(ledger: ChaincodeLedger) -> None:
    a = signed_message(KEY, [reading("r1"), reading("r2")], message_id="a")
    b = signed_message(KEY, [reading("r2"), reading("r3")], message_id="b")
    out = _record(ledger, a, b, a)
    assert [(r["status"], r["accepted"], r["duplicates"]) for r in out["results"]] == [
        ("accepted", 2, []),
        ("accepted", 1, ["r2"]),
        ("rejected", 0, []),
    ]
    assert out["results"][2]["error"]["code"] == "duplicate_reading"
    assert out["accepted"] == 3
    batch = ledger.state(keys.usage_batch(CONTRACT_ID, "2026-11", out["tx_id"]))
    assert batch["readings"] == 3


def test_message_id_reused_with_other_content_is_message_conflict(ledger: ChaincodeLedger) -> None:
    _record(ledger, signed_message(KEY, [reading("r1")]))
    _rejected(ledger, signed_message(KEY, [reading("r7")]), "message_conflict")


def test_one_batch_per_contract_and_period(ledger: ChaincodeLedger) -> None:
    ledger.now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    msg = signed_message(
        KEY,
        [
            reading("nov", timestamp="2026-11-30T23:30:00+01:00"),
            reading("dec", timestamp="2026-11-30T23:30:00Z"),  # 00:30 on 1 December in Berlin
        ],
    )
    out = _record(ledger, msg)
    tx = out["tx_id"]
    assert ledger.state(keys.reading(CONTRACT_ID, "2026-12", DEVICE_ID, "dec"))["period"] == "2026-12"
    assert ledger.state(keys.usage_batch(CONTRACT_ID, "2026-11", tx))["readings"] == 1
    assert ledger.state(keys.usage_batch(CONTRACT_ID, "2026-12", tx))["readings"] == 1
    assert ledger.last_event()[1] == {
        "batches": [
            {"contract_id": CONTRACT_ID, "period": "2026-11", "readings": 1},
            {"contract_id": CONTRACT_ID, "period": "2026-12", "readings": 1},
        ]
    }


@pytest.mark.parametrize("body", [{}, {"messages": []}, {"messages": "x"}, {"messages": {"a": 1}}])
def test_malformed_batch_is_refused_whole(ledger: ChaincodeLedger, body: dict) -> None:
    ledger.refuse("RecordUsage", body, "invalid_argument")


@pytest.mark.parametrize(
    "message",
    [
        "x",
        {"device_id": DEVICE_ID, "message_id": "m", "readings": [], "signature": "AA=="},
        {"device_id": DEVICE_ID, "readings": [reading("r1")], "signature": "AA=="},
    ],
)
def test_malformed_message_is_rejected_alone(ledger: ChaincodeLedger, message: object) -> None:
    _rejected(ledger, message, "invalid_argument")  # type: ignore[arg-type]


class CountingStub:
    """Wraps a stub and counts state reads (the duplicate check must be one multi-get per message)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.get_state_keys: list[str] = []
        self.multi_calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get_state(self, key: str) -> bytes | None:
        self.get_state_keys.append(key)
        return self.inner.get_state(key)  # type: ignore[attr-defined]

    def get_multiple_states(self, keys_: list[str]) -> list[bytes | None]:
        self.multi_calls += 1
        return self.inner.get_multiple_states(keys_)  # type: ignore[attr-defined]


def test_duplicate_check_is_one_multi_get_per_message(ledger: ChaincodeLedger) -> None:
    from chaincode.contract import invoke
    from chaincode.stub import InMemoryStub

    msgs = [
        signed_message(KEY, [reading(f"m{m}-r{i}") for i in range(50)], message_id=f"m{m}") for m in range(3)
    ]
    inner = InMemoryStub(ledger.world, tx_id="t-count", timestamp=ledger.now, creator_msp_id=PROVIDER)
    stub = CountingStub(inner)
    out = json.loads(invoke(stub, "RecordUsage", [json.dumps({"messages": msgs})]))  # type: ignore[arg-type]
    assert out["accepted"] == 150
    assert stub.multi_calls == 3 + 1  # one per message, and one for the devices' contracts (ADR 0028)
    assert not any(k.startswith(keys.readings_prefix(CONTRACT_ID, "2026-11")) for k in stub.get_state_keys)
    # asset, contract, period and message keys only: a handful of reads for 150 readings
    assert len(stub.get_state_keys) <= 3 * 3 + 3


def test_queries_return_messages_and_readings(ledger: ChaincodeLedger) -> None:
    msg = signed_message(KEY, [reading("r2"), reading("r1")])
    _record(ledger, msg)
    assert ledger.evaluate("GetUsageMessage", {"device_id": DEVICE_ID, "message_id": "msg-1"}) == msg
    ledger.refuse("GetUsageMessage", {"device_id": DEVICE_ID, "message_id": "nope"}, "unknown_message")
    out = ledger.evaluate("GetReadings", {"contract_id": CONTRACT_ID, "period": "2026-11"}, org=AUDITOR)
    assert [r["id"] for r in out["readings"]] == ["r1", "r2"]
    assert all(r["message_id"] == "msg-1" for r in out["readings"])


def test_message_with_invalid_unicode_is_rejected_not_a_crash(ledger: ChaincodeLedger) -> None:
    msg = signed_message(KEY, [reading("r1")])
    text = json.dumps({"messages": [msg]}).replace('"r1"', '"\\ud800"')
    out = json.loads(ledger.submit_raw("RecordUsage", [text]))
    assert out["results"][0]["error"]["code"] == "invalid_argument"
    assert ledger.world.write_log[-1][1] == []


def test_shared_fixtures_work(active_ledger: tuple[ChaincodeLedger, DeviceKey]) -> None:
    ledger, key = active_ledger
    assert _record(ledger, signed_message(key, [reading("r1")]))["accepted"] == 1
