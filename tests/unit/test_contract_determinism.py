"""Every peer must write the same bytes: the same inputs on independent worlds give identical write logs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random

import pytest

from chaincode.contract import invoke
from chaincode.stub import InMemoryStub
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    example_usage,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.unit

KEY = make_device_key()
INV = f"inv-{CONTRACT_ID}-2026-11"


def _script() -> list[tuple[str, dict, str, dt.datetime]]:
    """A whole story, signed once (ECDSA signatures are randomised) and replayed on every world."""
    t0 = dt.datetime(2026, 11, 10, 8, 0, tzinfo=dt.UTC)
    usage = example_usage(KEY, messages=3)
    bad = signed_message(KEY, [reading("bad", metric="coffee")], message_id="bad")
    dup = signed_message(KEY, [reading("r-000001"), reading("extra-1")], message_id="dup")
    return [
        ("RegisterAsset", sample_asset(KEY), PROVIDER, t0),
        ("ProposeContract", sample_contract(), PROVIDER, t0 + dt.timedelta(minutes=1)),
        ("AcceptContract", {"contract_id": CONTRACT_ID}, CUSTOMER, t0 + dt.timedelta(minutes=2)),
        ("RecordUsage", {"messages": usage[:2]}, PROVIDER, t0 + dt.timedelta(days=6, microseconds=1234)),
        ("RecordUsage", {"messages": [usage[2], bad, dup]}, CUSTOMER, t0 + dt.timedelta(days=7)),
        ("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, CUSTOMER, NOV_END),
        (
            "RecordErpPosting",
            {
                "invoice_id": INV,
                "target": "provider",
                "system": "sap-soap",
                "document_id": "D1",
                "delivery_id": "x",
            },
            PROVIDER,
            NOV_END + dt.timedelta(hours=1),
        ),
        (
            "RecordPayment",
            {"invoice_id": INV, "payment_id": "p1", "amount": "100.00"},
            PROVIDER,
            NOV_END + dt.timedelta(days=9),
        ),
        ("Dispute", {"invoice_id": INV, "reason": "count"}, CUSTOMER, NOV_END + dt.timedelta(days=10)),
        (
            "IssueCreditNote",
            {"invoice_id": INV, "reason": "ok", "amount": "50.00"},
            PROVIDER,
            NOV_END + dt.timedelta(days=11),
        ),
    ]


def _run(script: list, encode) -> ChaincodeLedger:  # type: ignore[no-untyped-def]
    ledger = ChaincodeLedger()
    for fn, body, org, at in script:
        ledger.submit_raw(fn, [encode(body)], org=org, at=at)
    return ledger


def _shuffled_json(body: object, rng: random.Random) -> str:
    """The same JSON value with object members in another order and other whitespace."""

    def shuffle(v: object) -> object:
        if isinstance(v, dict):
            items = list(v.items())
            rng.shuffle(items)
            return {k: shuffle(x) for k, x in items}
        if isinstance(v, list):
            return [shuffle(x) for x in v]
        return v

    return json.dumps(shuffle(body), indent=rng.choice([None, 1, 4]))


def test_two_worlds_write_byte_identical_logs() -> None:
    script = _script()
    a = _run(script, json.dumps)
    rng = random.Random(7)
    b = _run(script, lambda body: _shuffled_json(body, rng))
    assert len(a.world.write_log) == len(script)
    assert all(writes for _, writes in a.world.write_log), "every step of the story must write something"
    assert a.world.write_log == b.world.write_log
    assert a.world.events == b.world.events
    assert {k: v.value for k, v in a.world.state.items()} == {k: v.value for k, v in b.world.state.items()}
    assert {k: v.endorsement for k, v in a.world.state.items()} == {
        k: v.endorsement for k, v in b.world.state.items()
    }


def test_writes_happen_in_a_fixed_order() -> None:
    ledger = _run(_script(), json.dumps)
    usage_writes = [k for k, _ in ledger.world.write_log[3][1]]
    kinds = [k.split("\x00")[1] for k in usage_writes]
    # readings of each message, then its message record; batch aggregates last
    assert kinds[-1] == "usagebatch"
    assert kinds.count("usagemsg") == 2


class CommittedReadsStub(InMemoryStub):
    """Reads like a Fabric peer: GetState and GetMultipleStates see committed state only, never this
    transaction's own writes (the InMemoryStub is more forgiving)."""

    def get_state(self, key: str) -> bytes | None:
        return self._world.value(key)

    def get_multiple_states(self, keys_: list[str]) -> list[bytes | None]:  # type: ignore[override]
        return [self._world.value(k) for k in keys_]


def test_same_writes_when_reads_do_not_see_own_writes() -> None:
    script = _script()
    # within one transaction: the same message twice, and a reading repeated across messages
    dup_in_tx = signed_message(KEY, [reading("x1"), reading("x2")], message_id="x")
    overlap = signed_message(KEY, [reading("x2"), reading("x3")], message_id="y")
    script.insert(
        5,
        (
            "RecordUsage",
            {"messages": [dup_in_tx, overlap, dup_in_tx]},
            PROVIDER,
            dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
        ),
    )
    a = _run(script, json.dumps)
    b = ChaincodeLedger()
    for fn, body, org, at in script:
        b.counter += 1
        stub = CommittedReadsStub(
            b.world,
            tx_id=hashlib.sha256(f"tx-{b.counter}".encode()).hexdigest(),
            timestamp=at,
            creator_msp_id=org,
        )
        invoke(stub, fn, [json.dumps(body)])
        stub.commit()
    assert a.world.write_log == b.world.write_log
    assert a.world.events == b.world.events
