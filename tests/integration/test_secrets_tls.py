"""`ledgerhub serve` over TLS with a test certificate: HTTPS works and verifies, plaintext HTTP on the same
port gets no HTTP answer, and a client limited to TLS 1.1 cannot connect (the server's floor is TLS 1.2)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.api.tls import MINIMUM_TLS, TlsConfigError, harden, uvicorn_tls_options
from hub.config import Settings, TlsSettings
from tests.helpers.api import TOKENS, auth
from tests.helpers.faults import free_port, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledgerhub-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def serve_tls(tmp: Path, port: int, cert: Path, key: Path, via_env: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGERHUB_DATA_DIR": str(tmp / "data"),
        "LEDGERHUB_TOKENS": json.dumps(TOKENS),
        "LEDGERHUB_SCHEDULER_ENABLED": "false",
    }
    args = [
        str(Path(sys.executable).parent / "ledgerhub"),
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if via_env:
        env.update(LEDGERHUB_TLS_CERT=str(cert), LEDGERHUB_TLS_KEY=str(key))
    else:
        args += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("wb"))


def wait_https(port: int, cert: Path, proc: subprocess.Popen[bytes], tmp: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError((tmp / "serve.log").read_text()[-2000:])
        try:
            if httpx.get(f"https://127.0.0.1:{port}/readyz", verify=str(cert), timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("TLS server never became ready")


def tls11_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


def tls11_possible_here(cert: Path, key: Path) -> bool:
    """Control: can this machine's OpenSSL speak TLS 1.1 at all (to a server that allows it)?"""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.minimum_version = ssl.TLSVersion.TLSv1
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        import threading

        def accept() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            return handshake(port, tls11_client()) == "TLSv1.1"
        except (ssl.SSLError, OSError):
            return False
        finally:
            thread.join(5)


@pytest.mark.parametrize("via_env", [False, True], ids=["cli-options", "env-settings"])
def test_serve_over_tls_only(tmp_path: Path, via_env: bool) -> None:
    cert, key = make_cert(tmp_path)
    port = free_port()
    proc = serve_tls(tmp_path, port, cert, key, via_env)
    try:
        wait_https(port, cert, proc, tmp_path)
        r = httpx.get(f"https://127.0.0.1:{port}/v1/invoices", headers=auth("tok-provider"), verify=str(cert))
        assert r.status_code == 200
        with pytest.raises(httpx.TransportError):  # plaintext on the TLS port: no HTTP answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # an unknown CA is not trusted by default
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=5)
        modern = ssl.create_default_context(cafile=str(cert))
        assert handshake(port, modern) in ("TLSv1.2", "TLSv1.3")
        if tls11_possible_here(cert, key):
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                handshake(port, tls11_client())
        else:
            print(
                "\nNOTE: this OpenSSL cannot speak TLS 1.1 even to a permissive server; the TLS 1.2 floor is "
                "checked on the context (test_hardened_context_floor) only"
            )
    finally:
        stop(proc)


def test_hardened_context_floor() -> None:
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == MINIMUM_TLS == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_tls_options_need_both_files(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    assert uvicorn_tls_options(tls=TlsSettings()) == {}
    options = uvicorn_tls_options(tls=Settings(tls_cert=cert, tls_key=key).tls)  # the legacy flat keys
    assert options["ssl_certfile"] == str(cert) and callable(options["ssl_context_factory"])
    assert uvicorn_tls_options(cert, key, TlsSettings(cert=tmp_path / "x", key=tmp_path / "y")) == options
    with pytest.raises(TlsConfigError):
        uvicorn_tls_options(cert, None, TlsSettings())
    with pytest.raises(TlsConfigError):
        uvicorn_tls_options(cert, tmp_path / "missing.pem", TlsSettings())
