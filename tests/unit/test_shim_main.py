"""`python -m chaincode` serves the real contract from its environment, and stops cleanly on SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.fake_peer import CCM, FakePeer

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_environment_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINCODE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "chaincode"], check=False, env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert b"CHAINCODE_ID" in proc.stderr


def test_a_bad_clock_skew_setting_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINCODE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "chaincode"], check=False, cwd=ROOT, capture_output=True, timeout=60,
        env={**env, "CHAINCODE_ID": "billing_1:abc", "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0",
             "CHAINCODE_MAX_CLOCK_SKEW_SECONDS": "five minutes"},
    )
    assert proc.returncode == 2, proc.stderr
    assert b"CHAINCODE_MAX_CLOCK_SKEW_SECONDS" in proc.stderr and b"Traceback" not in proc.stderr


def test_unreadable_tls_file_and_taken_address_are_clear_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINCODE_")}
    missing = tmp_path / "no-such-cert.pem"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra, expected in (
            ({"CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0", "CHAINCODE_TLS_CERT_FILE": str(missing),
              "CHAINCODE_TLS_KEY_FILE": str(missing)}, str(missing).encode()),
            ({"CHAINCODE_SERVER_ADDRESS": f"127.0.0.1:{port}"}, f"127.0.0.1:{port}".encode()),
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "chaincode"], check=False, cwd=ROOT, capture_output=True, timeout=60,
                env={**env, "CHAINCODE_ID": "billing_1:abc", **extra},
            )
            assert proc.returncode == 2, proc.stderr
            assert expected in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr


def test_serves_the_contract_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, CHAINCODE_ID="billing_1:abc", CHAINCODE_SERVER_ADDRESS=f"127.0.0.1:{port}",
               CHAINCODE_MAX_CLOCK_SKEW_SECONDS="60")
    log = (tmp_path / "chaincode.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "chaincode"], env=env, cwd=ROOT, stderr=log)
    try:
        for _ in range(600):  # wait until it listens (bounded poll)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (tmp_path / "chaincode.log").read_text()
            time.sleep(0.05)
        with FakePeer(f"127.0.0.1:{port}") as peer:
            assert peer.chaincode_name == "billing_1:abc"
            result = peer.invoke("GetAsset", [json.dumps({"id": "nope"}).encode()])
            # the process bounds proposal timestamps by its own clock, as the environment says (ADR 0027)
            ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            forward = peer.invoke("RegisterAsset", [b"{}"], timestamp=ahead)
        assert forward.response.status == 503
        refusal = json.loads(forward.response.message)
        assert refusal["code"] == "tx_timestamp_skew" and refusal["max_skew_seconds"] == 60
        assert forward.writes == {}
        assert result.message.type == CCM.COMPLETED
        assert result.response.status == 404
        assert json.loads(result.response.message)["code"] == "unknown_asset"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
