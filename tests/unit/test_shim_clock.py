"""The Fabric shim path carries the endorser's clock bound (ADR 0027): the timestamp comes from the
SignedProposal the peer forwards, the clock from the chaincode server's host. Driven by the fake peer."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest

from chaincode.clock import ClockBound
from chaincode.contract import bounded
from chaincode.shim import ChaincodeServer, ServerConfig
from tests.helpers.chaincode import CONTRACT_ID, PROVIDER, make_device_key, sample_asset
from tests.helpers.fake_peer import CCM, FakePeer

PEER_NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[ChaincodeServer]:
    bound = ClockBound(dt.timedelta(minutes=5), lambda: PEER_NOW)
    srv = ChaincodeServer(bounded(bound), ServerConfig(chaincode_id="billing_1:x", address="127.0.0.1:0"))
    srv.start()
    yield srv
    srv.stop(grace=None)


def test_a_forward_dated_proposal_is_refused_before_any_state_call(server: ChaincodeServer) -> None:
    close = json.dumps({"contract_id": CONTRACT_ID, "period": "2026-12"}).encode()
    with FakePeer(f"127.0.0.1:{server.port}") as peer:
        result = peer.invoke("CloseBillingPeriod", [close], msp_id=PROVIDER,
                             timestamp=PEER_NOW + dt.timedelta(days=30))
    assert result.message.type == CCM.COMPLETED
    assert result.response.status == 503
    body = json.loads(result.response.message)
    assert body["code"] == "tx_timestamp_skew"
    assert body["tx_timestamp"] == "2027-01-01T09:00:00Z" and body["endorser_time"] == "2026-12-02T09:00:00Z"
    assert result.writes == {} and result.requests == []  # nothing read, nothing written
    assert not result.message.HasField("chaincode_event")


def test_within_the_skew_the_transaction_runs_and_queries_are_not_bounded(server: ChaincodeServer) -> None:
    asset = json.dumps(sample_asset(make_device_key())).encode()
    with FakePeer(f"127.0.0.1:{server.port}") as peer:
        near = peer.invoke("RegisterAsset", [asset], msp_id=PROVIDER,
                           timestamp=PEER_NOW - dt.timedelta(minutes=4))
        assert near.response.status == 200, near.response.message
        assert near.writes  # the asset record
        peer.commit(near)
        query = peer.invoke("GetAsset", [json.dumps({"id": "mri-berlin-01"}).encode()],
                            timestamp=PEER_NOW + dt.timedelta(days=1))
    assert query.response.status == 200
    assert json.loads(query.response.payload)["id"] == "mri-berlin-01"
