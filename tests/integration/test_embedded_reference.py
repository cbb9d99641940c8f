"""The embedded ledger's Stub behaves like the reference `InMemoryStub`: random sequences of transactions
(writes, deletes, read-modify-writes, scans, composite keys, key policies, refusals) give the same answers,
the same world state and the same key histories on both."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode.errors import ChaincodeError
from chaincode.stub import InMemoryStub, InMemoryWorld
from hub.ledger.base import ChaincodeRejected
from hub.ledger.verify import verify_ledger
from tests.helpers.embedded import CUSTOMER, PROVIDER, arg, make_signers, open_toy_ledger, toy_invoke

pytestmark = pytest.mark.integration

KEYS = ["a", "a/1", "a/2", "b", "é", "\U0001f600"]
ATTRS = st.lists(st.sampled_from(["c1", "c2", "2026-11", "x"]), min_size=1, max_size=3)

OPS = st.one_of(
    st.tuples(
        st.just("put"), st.fixed_dictionaries({"key": st.sampled_from(KEYS), "value": st.text(max_size=5)})
    ),
    st.tuples(st.just("delete"), st.fixed_dictionaries({"key": st.sampled_from(KEYS)})),
    st.tuples(st.just("incr"), st.fixed_dictionaries({"key": st.sampled_from(["n1", "n2"])})),
    st.tuples(
        st.just("put_then_read"), st.fixed_dictionaries({"key": st.sampled_from(KEYS), "value": st.just("v")})
    ),
    st.tuples(
        st.just("scan"),
        st.fixed_dictionaries(
            {"start": st.sampled_from(["", "a", "a/", "b"]), "end": st.sampled_from(["", "a0", "c"])}
        ),
    ),
    st.tuples(
        st.just("put_composite"),
        st.fixed_dictionaries({"type": st.just("t"), "attrs": ATTRS, "value": st.just("1")}),
    ),
    st.tuples(
        st.just("list_composite"),
        st.fixed_dictionaries({"type": st.just("t"), "attrs": st.lists(st.just("c1"), max_size=1)}),
    ),
    st.tuples(
        st.just("lock"),
        st.fixed_dictionaries({"key": st.sampled_from(KEYS), "orgs": st.just([PROVIDER, CUSTOMER])}),
    ),
    st.tuples(st.just("policy"), st.fixed_dictionaries({"key": st.sampled_from(KEYS)})),
    st.tuples(st.just("reject"), st.fixed_dictionaries({"key": st.sampled_from(KEYS)})),
    st.tuples(st.just("get"), st.fixed_dictionaries({"key": st.sampled_from(KEYS)})),
)


def _reference(world: InMemoryWorld, fn: str, body: dict, tx_id: str) -> bytes | str:
    stub = InMemoryStub(
        world, tx_id=tx_id, timestamp=dt.datetime(2026, 11, 5, tzinfo=dt.UTC), creator_msp_id=PROVIDER
    )
    try:
        out = toy_invoke(stub, fn, [json.dumps(body).encode()])
    except ChaincodeError as exc:
        return exc.code
    stub.commit()
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=12))
def test_same_answers_state_and_history_as_the_reference(ops: list[tuple[str, dict]]) -> None:
    world = InMemoryWorld()
    with tempfile.TemporaryDirectory() as tmp:
        led = open_toy_ledger(
            Path(tmp) / "l", make_signers((PROVIDER, CUSTOMER)), block_timeout=0.0, synchronous="OFF"
        )
        try:
            for fn, body in ops:
                try:
                    commit = led.submit(fn, [arg(body)], as_org=PROVIDER)
                    got: bytes | str = commit.payload
                    tx_id = commit.tx_id
                except ChaincodeRejected as exc:
                    got, tx_id = exc.code, "refused"
                assert got == _reference(world, fn, body, tx_id), (fn, body)
            state = {k: (e.value, list(e.policy) if e.policy else None) for k, e in led.state()}
            expected = {k: (c.value, c.endorsement or None) for k, c in world.state.items()}
            assert state == expected
            for key in {k for _, b in ops for k in [b.get("key")] if k}:
                hist = json.loads(led.evaluate("history", [arg({"key": key})], as_org=PROVIDER))
                ref = [[m.tx_id, m.value.decode(), m.is_delete] for m in reversed(world.history.get(key, []))]
                assert hist == ref, key
            assert verify_ledger(led).ok
        finally:
            led.close()
