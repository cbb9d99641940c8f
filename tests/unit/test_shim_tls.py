"""The chaincode server with the network's mutual-TLS material (network/cctls.py), configured from the
environment exactly as `python -m chaincode` is: a peer with the client certificate gets served, a client
without one (or trusting another CA) does not."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from chaincode.shim import ChaincodeServer, ServerConfig
from chaincode.stub import Stub
from network.cctls import ChaincodeTLS, make_chaincode_tls
from tests.helpers.fake_peer import FakePeer


def _ok(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
    return b"over tls"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ChaincodeServer, ChaincodeTLS]]:
    tls = make_chaincode_tls(tmp_path / "cc-tls")
    env = {"CHAINCODE_ID": "billing_1:tls", "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0", **tls.server_env()}
    config = ServerConfig.from_env(env)
    assert config.tls_client_ca is not None
    srv = ChaincodeServer(_ok, config)
    srv.start()
    yield srv, tls
    srv.stop(grace=None)


def test_peer_with_the_client_certificate_is_served(tls_server: tuple[ChaincodeServer, ChaincodeTLS]) -> None:
    srv, tls = tls_server
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_cert.read_bytes(),
        private_key=tls.client_key.read_bytes(),
        certificate_chain=tls.client_cert.read_bytes(),
    )
    with FakePeer(f"127.0.0.1:{srv.port}", credentials=creds) as peer:
        assert peer.chaincode_name == "billing_1:tls"
        assert peer.invoke("x").response.payload == b"over tls"


def test_client_without_a_certificate_is_refused(tls_server: tuple[ChaincodeServer, ChaincodeTLS]) -> None:
    srv, tls = tls_server
    creds = grpc.ssl_channel_credentials(root_certificates=tls.ca_cert.read_bytes())
    with pytest.raises(grpc.RpcError):
        FakePeer(f"127.0.0.1:{srv.port}", credentials=creds)


def test_plaintext_client_is_refused(tls_server: tuple[ChaincodeServer, ChaincodeTLS]) -> None:
    srv, _ = tls_server
    with pytest.raises(grpc.RpcError):
        FakePeer(f"127.0.0.1:{srv.port}")
