"""Our gateway client against Fabric's reference client (fabric-gateway v1.7.0, Go) on the same fake
Gateway service: the requests both send must be the same apart from nonce, tx id, timestamp and signatures
(ChannelHeader fields and extension, SignatureHeader, invocation spec, transient map, endorse/submit/
commit-status/events requests). The fake verifies every signature and tx id, so the reference client also
proves the fake's checks are Fabric's.

Needs the Go toolchain with fabric-gateway v1.7.0 in the module cache (or a reachable GOPROXY); otherwise
it skips with the build error.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import chaincode_event_pb2, chaincode_pb2, proposal_pb2

from hub.ledger.fabric.client import FabricLedger, GatewayEndpoint
from hub.ledger.fabric.identity import FabricIdentity
from tests.helpers.goref import build_reference
from tests.unit.test_gateway_client import FakeGateway, make_identity

pytestmark = pytest.mark.fabric


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reference("gateway", tmp_path_factory.mktemp("ref-gateway"))


def _proposal(signed: proposal_pb2.SignedProposal) -> dict[str, Any]:
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    assert channel_header.HasField("timestamp") and len(signature_header.nonce) == 24
    channel_header.ClearField("timestamp")
    channel_header.tx_id = "<tx id>"
    return {
        "proposal_fields": [f.name for f, _ in proposal.ListFields()],
        "channel_header": channel_header.SerializeToString(deterministic=True),
        "signature_header_fields": [f.name for f, _ in signature_header.ListFields()],
        "creator": signature_header.creator,
        "input": chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input),
        "transient": dict(payload.TransientMap),
    }


def _exchange(driver: Callable[[str], None]) -> dict[str, Any]:
    fake = FakeGateway()
    event = chaincode_event_pb2.ChaincodeEvent(
        chaincode_id="billing", tx_id="t9", event_name="E", payload=b""
    )
    fake.events = [gateway_pb2.ChaincodeEventsResponse(block_number=5, events=[event])]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        driver(f"127.0.0.1:{port}")
    finally:
        server.stop(None)
    endorse = fake.seen["endorse"][0]
    submit = fake.seen["submit"][0]
    commit = gateway_pb2.CommitStatusRequest.FromString(fake.seen["commit"][0].request)  # type: ignore[attr-defined]
    events = fake.seen["events"][0]
    return {
        "evaluate": _proposal(fake.seen["evaluate"][0].proposed_transaction),  # type: ignore[attr-defined]
        "endorse": _proposal(endorse.proposed_transaction),  # type: ignore[attr-defined]
        "endorse_request": (endorse.channel_id, list(endorse.endorsing_organizations)),  # type: ignore[attr-defined]
        "submit": (submit.channel_id, submit.transaction_id == endorse.transaction_id),  # type: ignore[attr-defined]
        "commit": (commit.channel_id, commit.transaction_id == endorse.transaction_id, commit.identity),  # type: ignore[attr-defined]
        "events": events.SerializeToString(deterministic=True),  # type: ignore[attr-defined]
    }


@pytest.fixture(scope="module")
def identity() -> FabricIdentity:
    return make_identity("ProviderMSP")


@pytest.fixture(scope="module")
def reference(
    go_client: Path, identity: FabricIdentity, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    keys = tmp_path_factory.mktemp("refgw-id")
    (keys / "cert.pem").write_bytes(identity.certificate_pem)
    key = identity.signer.private_key  # type: ignore[attr-defined]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (keys / "key.pem").write_bytes(pem)

    def drive(address: str) -> None:
        argv = [str(go_client), address, str(keys / "cert.pem"), str(keys / "key.pem")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr

    yield _exchange(drive)


def test_requests_match_the_reference_client(reference: dict[str, Any], identity: FabricIdentity) -> None:
    def drive(address: str) -> None:
        ledger = FabricLedger(
            channel="billing",
            chaincode="billing",
            identities={"ProviderMSP": identity},
            gateways={"*": GatewayEndpoint(address, insecure=True)},
        )
        try:
            assert ledger.evaluate("GetAsset", ["{}"], as_org="ProviderMSP")
            commit = ledger.submit(
                "RecordUsage",
                ["{}"],
                as_org="ProviderMSP",
                transient={"k": b"v"},
                endorsing_orgs=["ProviderMSP"],
            )
            assert commit.valid
            assert [e.tx_id for e in ledger.events(4, timeout=1)] == ["t9"]
        finally:
            ledger.close()

    ours = _exchange(drive)
    assert ours.keys() == reference.keys()
    for key in reference:
        assert ours[key] == reference[key], key
