"""The real network (native Fabric binaries) as `fabric_network` brings it up: nodes healthy, channel on
every peer (the auditor too), chaincode committed with the designed policies, TLS on every endpoint."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path

import pytest
from fabric_protos.msp import msp_principal_pb2
from fabric_protos.peer import policy_pb2

from network import admin
from network.layout import CHANNEL
from tests.helpers.fabric_network import FabricNetwork

pytestmark = pytest.mark.fabric

ORGS = ("provider", "customer", "auditor")


def test_every_node_is_alive_and_healthy(fabric_network: FabricNetwork) -> None:
    report = fabric_network.status()
    assert {"orderer", "peer-provider", "peer-customer", "peer-auditor"} <= set(report)
    for name, entry in report.items():
        assert entry["alive"], name
        if name != "chaincode":
            assert entry["healthy"], name


def test_orderer_is_consenter_of_active_channel(fabric_network: FabricNetwork) -> None:
    status, body = admin.osnadmin(fabric_network.layout, "list", "--channelID", CHANNEL)
    assert status == 200
    assert body["status"] == "active"
    assert body["consensusRelation"] == "consenter"


@pytest.mark.parametrize("org", ORGS)
def test_every_peer_has_joined_the_channel(fabric_network: FabricNetwork, org: str) -> None:
    listed = fabric_network.peer_cli(org, "channel", "list")
    assert CHANNEL in [line.strip() for line in listed.splitlines()]
    # genesis block + at least the block with the chaincode definition commit
    assert fabric_network.channel_height(org) >= 2


def _signature_policy_members(validation_parameter: str) -> tuple[set[tuple[str, int]], int, int]:
    app = policy_pb2.ApplicationPolicy.FromString(base64.b64decode(validation_parameter))
    env = app.signature_policy
    members = set()
    for ident in env.identities:
        role = msp_principal_pb2.MSPRole.FromString(ident.principal)
        members.add((role.msp_identifier, role.role))
    return members, env.rule.n_out_of.n, len(env.rule.n_out_of.rules)


@pytest.mark.parametrize("org", ORGS)
def test_chaincode_definition_committed_with_or_policy(fabric_network: FabricNetwork, org: str) -> None:
    d = fabric_network.query_committed(org)
    assert int(d["sequence"]) == 1
    assert d["version"] == "1"
    assert d["approvals"] == {"ProviderMSP": True, "CustomerMSP": True, "AuditorMSP": True}
    param = d.get("validation_parameter") or d["validationParameter"]
    members, n, of = _signature_policy_members(param)
    peer = msp_principal_pb2.MSPRole.PEER
    # OR('ProviderMSP.peer','CustomerMSP.peer'): one of two; the auditor is in no endorsement policy
    assert members == {("ProviderMSP", peer), ("CustomerMSP", peer)}
    assert (n, of) == (1, 2)


@pytest.mark.parametrize("org", ORGS)
def test_package_installed_on_every_peer(fabric_network: FabricNetwork, org: str) -> None:
    out = fabric_network.peer_cli(org, "lifecycle", "chaincode", "queryinstalled", "-O", "json")
    installed = json.loads(out[out.index("{") : out.rindex("}") + 1])
    ids = [c["package_id"] for c in installed.get("installed_chaincodes", [])]
    assert fabric_network.info["chaincode"]["package_id"] in ids


def test_peer_reaches_chaincode_server_over_tls(fabric_network: FabricNetwork) -> None:
    """A query through the provider's peer runs in the chaincode server, which the peer dials with mTLS."""
    if not fabric_network.info["chaincode"]["server_started_by_network"]:
        pytest.skip("LEDGERHUB_FABRIC_NO_CHAINCODE=1: no chaincode server started")
    assert fabric_network.info["chaincode"]["server_tls"] is True
    out = fabric_network.peer_cli(
        "provider",
        "chaincode",
        "query",
        "-C",
        CHANNEL,
        "-n",
        "billing",
        "-c",
        json.dumps({"Args": ["ListInvoices", "{}"]}),
    )
    json.loads(out.strip().splitlines()[-1])


def _endpoints(net: FabricNetwork) -> list[tuple[str, int, Path]]:
    info = net.info
    eps = [
        (
            "orderer",
            int(info["orderer"]["endpoint"].rsplit(":", 1)[1]),
            Path(info["orderer"]["tls_root_cert"]),
        )
    ]
    for key, org in info["orgs"].items():
        eps.append((key, int(org["peer"]["endpoint"].rsplit(":", 1)[1]), Path(org["peer"]["tls_root_cert"])))
    return eps


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_plaintext_grpc_is_refused_everywhere(fabric_network: FabricNetwork) -> None:
    """A client speaking plaintext HTTP/2 (gRPC without TLS) never gets an HTTP/2 answer: the node closes
    the connection or answers with a TLS alert record (content type 0x15)."""
    for name, port, _ in _endpoints(fabric_network):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(H2_PREFACE)
            try:
                answer = s.recv(64)
            except ConnectionResetError:
                answer = b""
        assert answer == b"" or answer[:1] == b"\x15", (name, answer[:16])


def test_tls_handshake_verifies_against_network_json_roots(fabric_network: FabricNetwork) -> None:
    """The TLS root certificate network.json names for each node verifies that node for 127.0.0.1."""
    for name, port, root in _endpoints(fabric_network):
        ctx = ssl.create_default_context(cafile=str(root))
        ctx.set_alpn_protocols(["h2"])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3"), name
            assert tls.selected_alpn_protocol() == "h2", name


def test_network_json_describes_client_identities(fabric_network: FabricNetwork) -> None:
    data = json.loads(fabric_network.network_json.read_text())
    assert data["channel"] == CHANNEL
    for key in ORGS:
        org = data["orgs"][key]
        assert org["endorses"] is (key != "auditor")
        for who in ("client", "admin"):
            assert Path(org[who]["cert"]).is_file()
            assert Path(org[who]["key"]).is_file()
            assert b"BEGIN CERTIFICATE" in Path(org[who]["cert"]).read_bytes()
