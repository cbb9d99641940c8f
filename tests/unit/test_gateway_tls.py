"""The gateway client over TLS: it verifies the peer against the org's TLS root and uses the peer's host
name (network.json `host_name`) when the address it dials is not in the certificate."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.gateway import gateway_pb2_grpc

from hub.ledger.base import LedgerUnavailable
from hub.ledger.fabric.client import FabricLedger, GatewayEndpoint, Timeouts
from tests.unit.test_gateway_client import FakeGateway, make_identity

HOST = "peer0.provider.ledgerhub.local"


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def tls_gateway() -> Iterator[tuple[int, bytes]]:
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("tls-ca", ca_key, ca_key, "tls-ca", ca=True)
    leaf = _cert(HOST, leaf_key, ca_key, "tls-ca", ca=False)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(FakeGateway(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(_pem(leaf_key), _pem(leaf))]))
    server.start()
    yield port, _pem(ca)
    server.stop(None)


def _ledger(endpoint: GatewayEndpoint) -> FabricLedger:
    return FabricLedger(
        channel="billing",
        chaincode="billing",
        identities={"ProviderMSP": make_identity("ProviderMSP")},
        gateways={"ProviderMSP": endpoint},
        timeouts=Timeouts(evaluate=5, endorse=5, submit=5, commit=5, warmup=0.5, unavailable=0.5),
    )


def test_tls_with_the_peer_host_name(tls_gateway: tuple[int, bytes]) -> None:
    port, root = tls_gateway
    ledger = _ledger(GatewayEndpoint(f"127.0.0.1:{port}", root, server_name=HOST))
    try:
        assert ledger.submit("RecordUsage", ["{}"], as_org="ProviderMSP").valid
    finally:
        ledger.close()


def test_tls_name_mismatch_is_unavailable(tls_gateway: tuple[int, bytes]) -> None:
    port, root = tls_gateway
    ledger = _ledger(GatewayEndpoint(f"127.0.0.1:{port}", root))  # 127.0.0.1 is not in the certificate
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.evaluate("GetAsset", ["{}"], as_org="ProviderMSP")
    finally:
        ledger.close()


def test_untrusted_root_is_unavailable(tls_gateway: tuple[int, bytes]) -> None:
    port, _ = tls_gateway
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = _pem(_cert("other-ca", other_key, other_key, "other-ca", ca=True))
    ledger = _ledger(GatewayEndpoint(f"127.0.0.1:{port}", other_root, server_name=HOST))
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.evaluate("GetAsset", ["{}"], as_org="ProviderMSP")
    finally:
        ledger.close()


def test_no_tls_root_is_refused_unless_plaintext_is_asked_for_by_name(tmp_path) -> None:
    """Without a TLS root the client used to dial plaintext silently (a typo in a setting meant signed
    proposals and trusted answers over an unauthenticated channel)."""
    from hub.config import Settings
    from hub.ledger.fabric import InsecureGateway, open_fabric_ledger

    with pytest.raises(InsecureGateway, match="LEDGERHUB_FABRIC_INSECURE"):
        GatewayEndpoint("127.0.0.1:7051")
    assert GatewayEndpoint("127.0.0.1:7051", insecure=True).insecure
    network = tmp_path / "network.json"
    org = {"mspid": "ProviderMSP", "peer": {"endpoint": "127.0.0.1:7051"}, "client": {}}
    description = {"channel": "billing", "chaincode": {"name": "billing"}, "orgs": {"p": org}}
    network.write_text(json.dumps(description))
    with pytest.raises(InsecureGateway):
        open_fabric_ledger(Settings(ledger="fabric", fabric_gateway="127.0.0.1:7051"))
    with pytest.raises(InsecureGateway):
        open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=network))
