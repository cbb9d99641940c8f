"""`ledgerhub network up --hsm` on a real network (native pkcs11-tagged binaries, SoftHSM2): the orderer's and
the peers' own signing keys are on one token per node, no node's signing key exists as a file anywhere in
the run directory, and the network endorses, orders and commits with them while the hub signs with its own
token keys (the key-use audit log records those). ADR 0036.

Uses the session network when that one is HSM-backed (LEDGERHUB_FABRIC_HSM=1), else brings up its own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2

from hub.config import Settings
from hub.keys import build_key_manager, build_signers
from hub.keys.audit_log import read_log
from hub.keys.certs import verify_issued_by
from hub.keys.signer import ski, verify_bytes
from network import hsm, hsm_rotate
from network.procs import recorded
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract
from tests.helpers.chaincode import signed_message as make_message
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.hsm]

NODES = ("orderer", "peer-provider", "peer-customer", "peer-auditor")
# The files that may hold a PEM private key in an HSM network's run dir (ADR 0036): TLS keys (Fabric's TLS
# does not go through the BCCSP), the org CAs (cryptogen's; a dev network's CA), cryptogen's Admin and
# User1 (the admin CLI; the hub signs with its own token keys), the chaincode server's TLS pair (also
# inside the peers' CCaaS connection.json).
ALLOWED = (
    re.compile(r"crypto/.*/tls/(server|client)\.key$"),
    re.compile(r"crypto/.*/(ca|tlsca)/priv_sk$"),
    re.compile(r"crypto/.*/users/(Admin|User1)@[^/]+/msp/keystore/priv_sk$"),
    re.compile(r"crypto/chaincode/(server|client)\.key$"),
    re.compile(
        r"peers/[a-z]+/data/externalbuilder/builds/[^/]+/(bld|release/chaincode/server)/connection\.json$"
    ),
)


def _node_cert(net: FabricNetwork, node: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        Path(hsm.state(net.run_dir)["nodes"][node]["signcert"]).read_bytes()
    )


def _msp_dir(net: FabricNetwork, node: str) -> Path:
    if node == "orderer":
        return net.layout.orderer_msp_dir
    return net.layout.peer_msp_dir(net.org(node.removeprefix("peer-")))


def _pem_keys(path: Path) -> list[ec.EllipticCurvePublicKey]:
    """The public halves of every PEM private key in `path` (JSON-escaped ones in connection.json too)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".json":
        text = json.dumps(json.loads(text))  # normalise, then unescape the newlines of embedded PEM
        text = text.replace("\\n", "\n")
    keys = []
    for block in re.findall(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", text, re.S
    ):
        key = serialization.load_pem_private_key(block.encode(), password=None)
        keys.append(key.public_key())  # type: ignore[union-attr]
    return keys


def _assert_no_node_key_is_a_file(net: FabricNetwork) -> None:
    """Each node's keystore is empty, its signcert is for the key the HSM state names and was issued by its
    org CA, and every PEM private key in the run dir is a named exception that is no node's signing key."""
    nodes = hsm.state(net.run_dir)["nodes"]
    node_points = {}
    for node in NODES:
        cert = _node_cert(net, node)
        msp = _msp_dir(net, node)
        assert list((msp / "keystore").iterdir()) == [], f"{node}: a key file is left in its keystore"
        assert ski(cert.public_key()) == nodes[node]["ski"]  # type: ignore[arg-type]
        ca = x509.load_pem_x509_certificate(next((msp / "cacerts").glob("*.pem")).read_bytes())
        assert verify_issued_by(cert, ca), f"{node}: signcert not issued by its org CA"
        node_points[node] = cert.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    found = list(hsm.pem_private_keys(net.run_dir))
    assert found, "the scan found nothing at all: it would not notice a key either"
    for path in found:
        rel = path.relative_to(net.run_dir).as_posix()
        assert any(p.search(rel) for p in ALLOWED), f"unexpected private key file {rel}"
        for public in _pem_keys(path):
            point = public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            assert point not in node_points.values(), f"{rel} holds a node's signing key"


def test_no_node_signing_key_is_a_file_and_every_node_runs_on_its_own_token(
    hsm_network: FabricNetwork,
) -> None:
    net = hsm_network
    assert net.info["hsm"] is not None and set(net.info["hsm"]["nodes"]) == set(NODES)
    assert {n: e["ski"] for n, e in net.info["hsm"]["nodes"].items()} == {
        n: e["ski"] for n, e in hsm.state(net.run_dir)["nodes"].items()
    }
    _assert_no_node_key_is_a_file(net)
    # one token directory per node, inside the run dir; the node process has it and the PKCS#11 module
    confs = set()
    by_name = {n.name: n for n in recorded(net.layout.pids_dir)}
    for node in NODES:
        entry = hsm.state(net.run_dir)["nodes"][node]
        conf = Path(entry["softhsm2_conf"])
        assert conf.is_relative_to(net.run_dir)
        tokens = re.search(r"directories\.tokendir\s*=\s*(\S+)", conf.read_text()).group(1)  # type: ignore[union-attr]
        assert Path(tokens).is_relative_to(net.run_dir) and any(Path(tokens).iterdir())
        confs.add(tokens)
        pid = by_name[node].pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"SOFTHSM2_CONF={conf}".encode() in environ, node
        assert "libsofthsm2" in Path(f"/proc/{pid}/maps").read_text(), (
            f"{node} has not loaded the PKCS#11 module"
        )
    assert len(confs) == len(NODES)
    # the nodes' configs name the PKCS11 BCCSP; no node's PIN is anywhere but its pin file and its config
    # (Fabric prints its configuration, PIN included, at start-up: those loggers are kept at WARNING)
    orderer_cfg = (net.layout.orderer_dir / "orderer.yaml").read_text()
    assert re.search(r"BCCSP:\n\s+Default: PKCS11\n", orderer_cfg)
    for org in ("provider", "customer", "auditor"):
        core = (net.layout.peer_dir(net.org(org)) / "node" / "core.yaml").read_text()
        assert re.search(r"BCCSP:\n\s+Default: PKCS11\n", core)
    pins = {node: (net.run_dir / "hsm" / node / "pin").read_text().strip() for node in NODES}
    logs = [p for p in net.layout.logs_dir.iterdir() if p.is_file()]
    assert len(logs) >= len(NODES)
    for path in [*logs, *[p for p in net.run_dir.rglob("*") if p.is_file() and "tokens" not in p.parts]]:
        text = path.read_bytes()
        for node, pin in pins.items():
            if pin.encode() in text:
                assert path in (net.run_dir / "hsm" / node / "pin", _config_of(net, node)), (
                    f"{node} PIN in {path}"
                )


def _config_of(net: FabricNetwork, node: str) -> Path:
    if node == "orderer":
        return net.layout.orderer_dir / "orderer.yaml"
    return net.layout.peer_dir(net.org(node.removeprefix("peer-"))) / "node" / "core.yaml"


def _header_bytes(header: common_pb2.BlockHeader) -> bytes:
    """Fabric's ASN.1 DER of (number, previous hash, data hash): what the orderer signs with the metadata."""

    def der(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = (
            bytes([n])
            if n < 0x80
            else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        return bytes([tag]) + length + body

    number = header.number.to_bytes(max(1, (header.number.bit_length() + 8) // 8), "big")
    return der(0x30, der(0x02, number) + der(0x04, header.previous_hash) + der(0x04, header.data_hash))


def _same_key(cert_pem: bytes, cert: x509.Certificate) -> bool:
    return x509.load_pem_x509_certificate(cert_pem).public_key() == cert.public_key()


def test_the_hsm_network_endorses_orders_and_commits(
    hsm_network: FabricNetwork,
    hsm_env: Any,
    tmp_path: Path,
) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    net = hsm_network
    settings = Settings(
        data_dir=tmp_path / "hub",
        ledger="fabric",
        fabric_network_dir=net.network_json,
        signer="pkcs11",
        pkcs11_token_label=hsm_env.token_label,
        pkcs11_pin=hsm_env.pin,
    )
    signers = build_signers(settings)  # the hub's client keys: on the hub's token, enrolled with the org CAs
    assert {PROVIDER, CUSTOMER} <= set(signers)
    ledger = open_fabric_ledger(settings, signers)
    tag = uuid.uuid4().hex[:8]
    device, contract_id = f"dev-{tag}", f"ctr-{tag}"
    key = make_device_key(tag)
    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(microsecond=0).isoformat()
    try:
        assert ledger.submit("RegisterAsset", [json.dumps(sample_asset(key, device))], as_org=PROVIDER).valid
        contract = sample_contract(id=contract_id, assets=[device], start="2026-01-01")
        assert ledger.submit("ProposeContract", [json.dumps(contract)], as_org=PROVIDER).valid
        accepted = ledger.submit(
            "AcceptContract", [json.dumps({"contract_id": contract_id})], as_org=CUSTOMER
        )
        assert accepted.valid
        message = make_message(
            key,
            [{"id": f"r-{tag}", "metric": "scan", "quantity": "3", "timestamp": stamp}],
            device_id=device,
            message_id=f"m-{tag}",
        )
        usage = ledger.submit("RecordUsage", [json.dumps({"messages": [message]})], as_org=PROVIDER)
        assert usage.valid
        period = (
            dt.datetime.fromisoformat(stamp)
            .astimezone(__import__("zoneinfo").ZoneInfo(contract["timezone"]))
            .strftime("%Y-%m")
        )
        back = json.loads(
            ledger.evaluate(
                "GetReadings", [json.dumps({"contract_id": contract_id, "period": period})], as_org=CUSTOMER
            )
        )["readings"]
        assert [(r["id"], r["quantity"], r["tx_id"]) for r in back] == [(f"r-{tag}", "3", usage.tx_id)]
        # the endorsements are the peers' token keys (their HSM-issued signcerts), and they verify
        record = ledger.tx(accepted.tx_id)
        assert record.status == "VALID"
        peers = {PROVIDER: _node_cert(net, "peer-provider"), CUSTOMER: _node_cert(net, "peer-customer")}
        assert {e.msp_id for e in record.endorsements} == {PROVIDER, CUSTOMER}  # the contract key needs both
        for endorsement in record.endorsements:
            assert _same_key(endorsement.certificate, peers[endorsement.msp_id]), endorsement.msp_id
        # the block holding the usage is signed by the orderer's token key
        block = common_pb2.Block.FromString(ledger.block(usage.block).raw["block"])
        meta = common_pb2.Metadata.FromString(
            block.metadata.metadata[common_pb2.BlockMetadataIndex.SIGNATURES]
        )
        orderer_cert = _node_cert(net, "orderer")
        assert meta.signatures, "block without orderer signatures"
        for sig in meta.signatures:
            header = common_pb2.SignatureHeader.FromString(sig.signature_header)
            creator = identities_pb2.SerializedIdentity.FromString(header.creator)
            assert creator.mspid == "OrdererMSP" and _same_key(creator.id_bytes, orderer_cert)
            signed = meta.value + sig.signature_header + _header_bytes(block.header)
            assert verify_bytes(orderer_cert.public_key(), sig.signature, signed)  # type: ignore[arg-type]
    finally:
        ledger.close()
    manager = build_key_manager(settings)
    manager.flush()
    used = {(e["op"], e["key"]) for e in read_log(manager.audit.path)}
    assert ("fabric-proposal", f"client-{PROVIDER}") in used
    assert ("fabric-proposal", f"client-{CUSTOMER}") in used


def test_network_json_names_the_tokens_but_no_pin(hsm_network: FabricNetwork) -> None:
    doc = hsm_network.network_json.read_text()
    for node in NODES:
        pin = (hsm_network.run_dir / "hsm" / node / "pin").read_text().strip()
        assert len(pin) >= 16 and pin not in doc
        assert oct(os.stat(hsm_network.run_dir / "hsm" / node / "pin").st_mode & 0o777) == "0o600"


def _submit_settled(ledger: Any, fn: str, args: list[str], as_org: str) -> Any:
    """Submit while the gateways' view of a just-restarted peer settles (bounded attempts, no clock)."""
    from hub.ledger.base import EndorsementFailed, LedgerUnavailable

    for _ in range(30):
        try:
            return ledger.submit(fn, args, as_org=as_org)
        except (EndorsementFailed, LedgerUnavailable):
            time.sleep(1)
    return ledger.submit(fn, args, as_org=as_org)


def test_a_rotated_peer_key_endorses_at_once_and_is_not_a_file_either(hsm_network: FabricNetwork) -> None:
    """Last in this module: it restarts the customer's peer on a new token key (network rotate-node-key)."""
    from hub.ledger.fabric import open_fabric_ledger

    net = hsm_network
    old = _node_cert(net, "peer-customer")
    result = hsm_rotate.rotate(net.run_dir, "peer-customer")
    new = _node_cert(net, "peer-customer")
    assert result["previous_ski"] == ski(old.public_key())  # type: ignore[arg-type]
    assert result["ski"] == ski(new.public_key()) != result["previous_ski"]  # type: ignore[arg-type]
    assert new.subject == old.subject
    _assert_no_node_key_is_a_file(net)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=net.network_json))
    tag = uuid.uuid4().hex[:8]
    device, contract_id = f"dev-{tag}", f"ctr-{tag}"
    try:
        asset = [json.dumps(sample_asset(make_device_key(tag), device))]
        assert _submit_settled(ledger, "RegisterAsset", asset, PROVIDER).valid
        contract = [json.dumps(sample_contract(id=contract_id, assets=[device], start="2026-01-01"))]
        assert _submit_settled(ledger, "ProposeContract", contract, PROVIDER).valid
        accept = [json.dumps({"contract_id": contract_id})]
        accepted = _submit_settled(ledger, "AcceptContract", accept, CUSTOMER)
        assert accepted.valid  # both orgs' peers endorsed (the contract key needs both)
        customer = [e for e in ledger.tx(accepted.tx_id).endorsements if e.msp_id == CUSTOMER]
        assert customer and _same_key(customer[0].certificate, new)
        assert not _same_key(customer[0].certificate, old)
    finally:
        ledger.close()
