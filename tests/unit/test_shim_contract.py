"""The real billing contract through the shim and a fake peer gives the same answers, writes and key
policies as on `InMemoryStub` (the embedded ledger's simulator), transaction for transaction."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fabric_protos.peer import chaincode_pb2

from chaincode.contract import invoke
from chaincode.errors import ChaincodeError
from chaincode.shim import ChaincodeServer, ServerConfig, orgs_from_policy
from chaincode.stub import InMemoryStub, InMemoryWorld
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    sample_asset,
    sample_contract,
)
from tests.helpers.fake_peer import CCM, FakePeer

DEC_2 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[ChaincodeServer]:
    srv = ChaincodeServer(invoke, ServerConfig(chaincode_id="billing_1:x", address="127.0.0.1:0", workers=8))
    srv.start()
    yield srv
    srv.stop(grace=None)


def _story() -> list[tuple[str, dict[str, Any], str, dt.datetime]]:
    key = make_device_key()
    usage = example_usage(key, messages=2)
    forged = dict(usage[0], message_id="forged", signature=usage[1]["signature"])
    return [
        ("RegisterAsset", sample_asset(key), PROVIDER, MID_NOV),
        ("ProposeContract", sample_contract(), PROVIDER, MID_NOV),
        ("AcceptContract", {"contract_id": CONTRACT_ID}, CUSTOMER, MID_NOV),
        ("RecordUsage", {"messages": usage}, PROVIDER, MID_NOV),
        ("RecordUsage", {"messages": [usage[0], forged]}, PROVIDER, MID_NOV),  # duplicate + forged
        ("GetUsage", {"contract_id": CONTRACT_ID, "period": "2026-11"}, CUSTOMER, MID_NOV),
        ("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, PROVIDER, DEC_2),
        ("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, CUSTOMER, DEC_2),  # replay
        ("ProposeContract", sample_contract(), PROVIDER, DEC_2),  # refused: exists
    ]


@pytest.mark.parametrize("batched", [False, True], ids=["one-call-per-write", "write-batch"])
def test_contract_on_peer_stub_matches_in_memory_stub(server: ChaincodeServer, batched: bool) -> None:
    params = chaincode_pb2.ChaincodeAdditionalParams(
        use_write_batch=batched,
        max_size_write_batch=100,
        use_get_multiple_keys=batched,
        max_size_get_multiple_keys=100,
    )
    world = InMemoryWorld()
    with FakePeer(f"127.0.0.1:{server.port}", params=params) as peer:
        for n, (fn, body, org, at) in enumerate(_story()):
            tx_id = f"{n:04d}" + "ab" * 30
            arg = json.dumps(body).encode()
            stub = InMemoryStub(world, tx_id=tx_id, timestamp=at, creator_msp_id=org)
            try:
                expected: bytes | ChaincodeError = invoke(stub, fn, [arg])
            except ChaincodeError as err:
                expected = err
            result = peer.invoke(fn, [arg], tx_id=tx_id, msp_id=org, timestamp=at)
            assert result.message.type == CCM.COMPLETED
            if isinstance(expected, ChaincodeError):
                assert result.response.status == expected.status, fn
                assert result.response.message == expected.to_json(), fn
                continue
            assert result.response.status == 200, (fn, result.response.message)
            assert result.response.payload == expected, fn
            assert result.writes == dict(stub.writes), fn
            if stub.event:
                assert (
                    result.message.chaincode_event.event_name,
                    result.message.chaincode_event.payload,
                ) == stub.event
            stub.commit()
            peer.commit(result, tx_id)
            for key, md in result.metadata.items():
                assert orgs_from_policy(md["VALIDATION_PARAMETER"]) == world.state[key].endorsement, key
    assert peer.state == {k: v.value for k, v in world.state.items()}
    invoice = json.loads(next(v for k, v in peer.state.items() if k.startswith("\x00invoice")))
    assert invoice["total"] == "13655.25"
