"""The per-run chaincode TLS material works for mutual TLS, and matches what `python -m chaincode` reads."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from chaincode.shim.server import ServerConfig
from network.cctls import ChaincodeTLS, make_chaincode_tls
from network.manage import chaincode_server_env

pytestmark = pytest.mark.integration


def _serve_once(tls: ChaincodeTLS, sock: socket.socket, result: dict[str, object]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.server_cert, tls.server_key)
    ctx.load_verify_locations(tls.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    conn, _ = sock.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            result["peer_cn"] = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            s.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        result["error"] = exc


def _handshake(tls: ChaincodeTLS, client_pair: bool) -> dict[str, object]:
    result: dict[str, object] = {}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        t = threading.Thread(target=_serve_once, args=(tls, sock, result))
        t.start()
        ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
        if client_pair:
            ctx.load_cert_chain(tls.client_cert, tls.client_key)
        try:
            with (
                socket.create_connection(sock.getsockname(), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                result["read"] = s.recv(2)
        except (ssl.SSLError, OSError) as exc:
            result["client_error"] = exc
        t.join(10)
    return result


def test_peer_client_pair_is_accepted(tmp_path: Path) -> None:
    result = _handshake(make_chaincode_tls(tmp_path), client_pair=True)
    assert result.get("read") == b"ok"
    assert result["peer_cn"] == "peer-client.ledgerhub.local"


def test_client_without_certificate_is_refused(tmp_path: Path) -> None:
    result = _handshake(make_chaincode_tls(tmp_path), client_pair=False)
    assert "read" not in result or result["read"] != b"ok"
    assert "error" in result


def test_server_env_is_what_the_chaincode_server_reads(tmp_path: Path) -> None:
    tls = make_chaincode_tls(tmp_path)
    env = chaincode_server_env("billing_1:abc", "127.0.0.1:17090", tls)
    cfg = ServerConfig.from_env(env)
    assert cfg.chaincode_id == "billing_1:abc"
    assert cfg.address == "127.0.0.1:17090"
    assert cfg.tls_cert == tls.server_cert.read_bytes()
    assert cfg.tls_client_ca == tls.ca_cert.read_bytes()
    assert (tls.server_key.stat().st_mode & 0o777) == 0o600
