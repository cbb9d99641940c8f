"""The hub's Fabric Gateway client signing through the PKCS#11 signer: proposals and transaction envelopes
are signed by HSM-held client keys whose certificates the org CA (on the token) issued; a protocol-level
gateway checks each signature against the creator certificate, and the key audit log records every use.
(The real-network version of this runs in tests/fabric when Fabric binaries can be had.)"""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from fabric_protos.gateway import gateway_pb2_grpc

from hub.keys.audit_log import read_log
from hub.keys.signer import is_low_s
from hub.ledger.fabric.client import FabricLedger, GatewayEndpoint, Timeouts
from hub.ledger.fabric.identity import identity_from_signer
from tests.unit.test_gateway_client import FakeGateway

pytestmark = [pytest.mark.integration, pytest.mark.hsm]
ORGS = ("ProviderMSP", "CustomerMSP")


def test_gateway_client_signs_with_hsm_keys(hsm_manager) -> None:
    fake = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    identities = {
        org: identity_from_signer(org, hsm_manager.signer(f"client-{org}", "fabric-proposal")) for org in ORGS
    }
    ledger = FabricLedger(
        channel="billing",
        chaincode="billing",
        identities=identities,
        gateways={"*": GatewayEndpoint(f"127.0.0.1:{port}", insecure=True)},
        timeouts=Timeouts(evaluate=5, endorse=5, submit=5, commit=2, warmup=3, unavailable=1),
    )
    try:
        for n in range(5):
            commit = ledger.submit("RecordUsage", [f'{{"n":{n}}}'], as_org=ORGS[n % 2])
            assert commit.valid
        assert ledger.evaluate("GetAsset", ['{"id":"a"}'], as_org="CustomerMSP") == b'{"ok":true}'
    finally:
        ledger.close()
        server.stop(None)
    # the fake gateway verified every proposal signature against the creator's certificate
    # besides the query, the client asked a peer for its height (QSCC) before an org acted after another
    height_polls = len(fake.seen.get("qscc", []))
    assert len(fake.seen["endorse"]) == 5 and len(fake.seen["evaluate"]) == 1 + height_polls
    for request in fake.seen["submit"]:
        assert is_low_s(request.prepared_transaction.signature)  # type: ignore[attr-defined]
    for org in ORGS:
        cert = hsm_manager.certificate(f"client-{org}")
        assert cert.issuer == hsm_manager.certificate(f"ca-{org}").subject  # issued by the org CA
    hsm_manager.audit.flush()
    uses = [e for e in read_log(hsm_manager.audit.path) if e["op"] == "fabric-proposal"]
    # per submit a proposal, an envelope and a commit-status request; plus the query's and polls' proposals
    assert len(uses) == 5 * 3 + 1 + height_polls
    assert {e["key"] for e in uses} == {f"client-{org}" for org in ORGS}
