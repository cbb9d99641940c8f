"""The endorser's bound on proposal timestamps (chaincode.clock, ADR 0027): the check itself, its
configuration from the environment, and the contract's dispatch applying it to transactions only."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from chaincode.clock import DEFAULT_MAX_SKEW, ENV_MAX_SKEW, ClockBound
from chaincode.contract import QUERIES, TRANSACTIONS, bounded, invoke
from chaincode.errors import ChaincodeError
from chaincode.stub import InMemoryStub, InMemoryWorld
from tests.helpers.chaincode import CONTRACT_ID, MID_NOV, PROVIDER, make_device_key, run, sample_asset

PEER_NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
BOUND = ClockBound(dt.timedelta(minutes=5), lambda: PEER_NOW)


@pytest.mark.parametrize("offset", [dt.timedelta(0), dt.timedelta(minutes=5), -dt.timedelta(minutes=5),
                                    dt.timedelta(minutes=4, seconds=59)])
def test_timestamps_within_the_skew_pass(offset: dt.timedelta) -> None:
    BOUND.check(PEER_NOW + offset, "CloseBillingPeriod")  # no exception


@pytest.mark.parametrize("offset,direction", [(dt.timedelta(minutes=5, microseconds=1), "ahead of"),
                                              (dt.timedelta(hours=2), "ahead of"),
                                              (-dt.timedelta(minutes=6), "behind")])
def test_timestamps_beyond_the_skew_are_refused_with_the_stable_code(
    offset: dt.timedelta, direction: str
) -> None:
    with pytest.raises(ChaincodeError) as err:
        BOUND.check(PEER_NOW + offset, "CloseBillingPeriod")
    assert err.value.code == "tx_timestamp_skew"
    assert err.value.status == 503
    assert direction in err.value.message
    assert err.value.details["max_skew_seconds"] == 300
    assert err.value.details["endorser_time"] == "2026-12-02T09:00:00Z"
    assert err.value.details["function"] == "CloseBillingPeriod"
    # the refusal survives the trip through a chaincode response message unchanged
    again = ChaincodeError.from_json(err.value.to_json())
    assert again is not None and again.code == "tx_timestamp_skew"


def test_configuration_from_the_environment() -> None:
    now = lambda: PEER_NOW  # noqa: E731
    assert ClockBound.from_env({}, now) == ClockBound(DEFAULT_MAX_SKEW)
    assert dt.timedelta(minutes=5) == DEFAULT_MAX_SKEW
    assert ClockBound.from_env({ENV_MAX_SKEW: "90"}, now) == ClockBound(dt.timedelta(seconds=90))
    assert ClockBound.from_env({ENV_MAX_SKEW: "off"}, now) is None
    for bad in ("abc", "0", "-5", "nan", "inf"):
        with pytest.raises(ValueError, match=ENV_MAX_SKEW):
            ClockBound.from_env({ENV_MAX_SKEW: bad}, now)


def _world_with_asset() -> InMemoryWorld:
    world = InMemoryWorld()
    run(world, "RegisterAsset", sample_asset(make_device_key()), at=MID_NOV)
    return world


def _snapshot(world: InMemoryWorld) -> tuple[object, ...]:
    return ({k: v.value for k, v in world.state.items()}, len(world.events), len(world.write_log))


def test_dispatch_refuses_a_forward_dated_transaction_before_it_reads_or_writes() -> None:
    world = _world_with_asset()
    before = _snapshot(world)
    stub = InMemoryStub(world, tx_id="tx-far", timestamp=PEER_NOW + dt.timedelta(days=30),
                        creator_msp_id=PROVIDER)
    body = json.dumps({"contract_id": CONTRACT_ID, "period": "2026-12"})
    with pytest.raises(ChaincodeError) as err:
        bounded(BOUND)(stub, "CloseBillingPeriod", [body])
    assert err.value.code == "tx_timestamp_skew"
    assert stub.writes == [] and stub.event is None
    assert _snapshot(world) == before
    # the same proposal on the unbounded contract reaches the function (its own refusal, not ours)
    with pytest.raises(ChaincodeError) as plain:
        invoke(InMemoryStub(world, tx_id="tx-far", timestamp=PEER_NOW + dt.timedelta(days=30),
                            creator_msp_id=PROVIDER), "CloseBillingPeriod", [body])
    assert plain.value.code != "tx_timestamp_skew"


def test_every_transaction_function_is_bounded_and_no_query_is() -> None:
    world = _world_with_asset()
    far = PEER_NOW + dt.timedelta(hours=1)
    for fn in TRANSACTIONS:
        stub = InMemoryStub(world, tx_id="t", timestamp=far, creator_msp_id=PROVIDER)
        with pytest.raises(ChaincodeError) as err:
            invoke(stub, fn, ["{}"], clock_bound=BOUND)
        assert err.value.code == "tx_timestamp_skew", fn
    for fn in QUERIES:
        stub = InMemoryStub(world, tx_id="q", timestamp=far, creator_msp_id=PROVIDER)
        try:
            invoke(stub, fn, ["{}"], clock_bound=BOUND)
        except ChaincodeError as exc:
            assert exc.code != "tx_timestamp_skew", fn  # refused for its argument, not for the clock
    # a query with a skewed timestamp answers normally
    stub = InMemoryStub(world, tx_id="q", timestamp=far, creator_msp_id=PROVIDER)
    asset = json.loads(invoke(stub, "GetAsset", [json.dumps({"id": "mri-berlin-01"})], clock_bound=BOUND))
    assert asset["id"] == "mri-berlin-01"


def test_a_transaction_within_the_skew_runs() -> None:
    world = InMemoryWorld()
    stub = InMemoryStub(world, tx_id="t", timestamp=PEER_NOW + dt.timedelta(minutes=4),
                        creator_msp_id=PROVIDER)
    out = json.loads(bounded(BOUND)(stub, "RegisterAsset", [json.dumps(sample_asset(make_device_key()))]))
    assert out["id"] == "mri-berlin-01" and stub.writes
