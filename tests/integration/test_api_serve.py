"""`ledgerhub serve` as a real process on a free port: settings from the environment, the default ledger
(embedded, org keys from hub.keys), and a restart that finds the same ledger and database again."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.api import TOKENS, auth
from tests.helpers.chaincode import make_device_key, sample_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGERHUB_DATA_DIR": str(data_dir),
        "LEDGERHUB_TOKENS": json.dumps(TOKENS),
        "LEDGERHUB_SCHEDULER_ENABLED": "false",
    }
    cli = Path(sys.executable).parent / "ledgerhub"
    return subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / f"serve-{port}.log").open("wb"),  # a full pipe would block the server
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes], base_dir: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            logs = sorted(Path(str(base_dir)).glob("serve-*.log"))
            raise AssertionError(f"server exited: {logs[-1].read_text()[-2000:] if logs else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)
    raise AssertionError("server never became ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_serve_persists_across_restarts(tmp_path):
    data_dir = tmp_path / "data"
    key = make_device_key("serve")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(data_dir, port)
    try:
        wait_ready(base, proc, tmp_path)
        r = httpx.post(f"{base}/v1/assets", json=sample_asset(key), headers=auth("tok-provider"), timeout=30)
        assert r.status_code == 201, r.text
        assert httpx.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "LedgerHub"
        # the other areas are wired when the hub opens its own ledger
        keys = httpx.get(f"{base}/v1/keys", headers=auth("tok-operator"), timeout=30)
        assert keys.status_code == 200, keys.text
        deliveries = httpx.get(f"{base}/v1/deliveries", headers=auth("tok-operator"), timeout=30)
        assert deliveries.status_code == 200 and deliveries.json()["items"] == []
        unauth = httpx.get(f"{base}/v1/invoices", timeout=10)
        assert unauth.status_code == 401 and unauth.json()["code"] == "unauthenticated"
    finally:
        stop(proc)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(data_dir, port)
    try:
        wait_ready(base, proc, tmp_path)
        r = httpx.get(f"{base}/v1/assets/mri-berlin-01", headers=auth("tok-provider"), timeout=10)
        assert r.status_code == 200 and r.json()["public_key"] == key.public_pem
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        assert ready["checks"]["ledger"]["height"] >= 2
    finally:
        stop(proc)
