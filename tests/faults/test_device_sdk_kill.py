"""kill -9 the device process that sends through `ledgerhub.device`, restart it, and prove that every
reading is on the ledger exactly once. The hub is a real process (`ledgerhub serve` on the embedded ledger,
tests/helpers/faults.py); the device is a real process too (tests/helpers/device_sender.py).

Three kills, each at a different moment of a batch: (1) the message is formed and recorded in the device's
queue but its POST has not left; (2) the hub has committed the message and answered, the device has not
recorded the answer; (3) whenever the queue shows a message in flight. Then a last run completes. The
ledger then holds N readings whose quantities sum to exactly the sum sent, and the closed period's invoice
counts N readings."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers.api import TOKENS, auth, last_month
from tests.helpers.chaincode import make_device_key, sample_asset, sample_contract
from tests.helpers.device_sender import DEVICE
from tests.helpers.faults import free_port, kill, start_hub, stop, wait_ready

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]

N = 120
CONTRACT = "ctr-sdk-crash"
ROOT = Path(__file__).resolve().parents[2]


def start_sender(base: str, queue: Path, key: Path, period: str, **hold: str) -> subprocess.Popen[str]:
    env = {**os.environ, **hold}
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.device_sender", base, str(queue), str(key),
                             str(N), period], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(predicate: Any, proc: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"sender exited ({proc.returncode}) before {what}"
        time.sleep(0.01)
    raise AssertionError(f"never saw {what}")


def queue_counts(queue: Path) -> dict[str, int]:
    if not queue.exists():
        return {}
    with sqlite3.connect(queue, timeout=30) as conn:
        try:
            return dict(conn.execute("SELECT state, COUNT(*) FROM readings GROUP BY state").fetchall())
        except sqlite3.OperationalError:
            return {}


def test_kill_9_the_sender_mid_batch_and_every_reading_lands_once(tmp_path):
    period, start = last_month()
    data = tmp_path / "hub"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"LEDGERHUB_DATA_DIR": str(data), "LEDGERHUB_DATABASE_URL": f"sqlite:///{data / 'hub.sqlite'}",
           "LEDGERHUB_TOKENS": json.dumps(TOKENS), "LEDGERHUB_SCHEDULER_ENABLED": "false"}
    hub = start_hub(env, port, tmp_path / "hub.log")
    try:
        wait_ready(port, hub, log=tmp_path / "hub.log")
        device_key = make_device_key("sdk-crash")
        key = tmp_path / "device.pem"
        key.write_bytes(device_key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.post("/v1/assets", json=sample_asset(device_key, DEVICE),
                             headers=auth("tok-provider")).status_code == 201
            contract = sample_contract(id=CONTRACT, assets=[DEVICE], start=start)
            assert http.post("/v1/contracts", json=contract, headers=auth("tok-provider")).status_code == 201
            accepted = http.post(f"/v1/contracts/{CONTRACT}/accept", headers=auth("tok-customer"))
            assert accepted.status_code == 200, accepted.text
        queue = tmp_path / "device-queue.sqlite"
        held = queue.with_suffix(".held")

        # 1: formed and recorded, not sent (the 3rd POST of this process)
        sender = start_sender(base, queue, key, period, SENDER_HOLD_REQUEST="3")
        wait_for(held.exists, sender, "the hold before the 3rd POST")
        kill(sender)
        before = queue_counts(queue)
        assert before.get("sending") == 7 and before.get("delivered") == 14, before
        held.unlink()

        # 2: the hub committed and answered, the device had not recorded it (the 2nd answer of this run)
        sender = start_sender(base, queue, key, period, SENDER_HOLD_RESPONSE="2")
        wait_for(held.exists, sender, "the hold after the 2nd answer")
        kill(sender)
        assert queue_counts(queue).get("sending") == 7  # on the ledger, but the queue does not know yet
        held.unlink()

        # 3: a kill at whatever moment a batch is in flight, past the middle
        sender = start_sender(base, queue, key, period)
        wait_for(lambda: queue_counts(queue).get("delivered", 0) >= N // 2
                 and queue_counts(queue).get("sending", 0) > 0, sender, "a batch in flight past the middle")
        kill(sender)

        # the last run completes
        sender = start_sender(base, queue, key, period)
        out, _ = sender.communicate(timeout=300)
        assert sender.returncode == 0 and out.startswith("done"), out
        counts = json.loads(out.split(" ", 1)[1])
        assert counts["refused"] == 0 and counts["queued"] == counts["sending"] == 0
        assert counts["delivered"] + counts["duplicate"] == N

        with httpx.Client(base_url=base, timeout=60) as http:
            usage = http.get(f"/v1/contracts/{CONTRACT}/usage", params={"period": period},
                             headers=auth("tok-provider")).json()
            scan = usage["aggregate"]["metrics"]["scan"]
            assert int(scan["count"]) == N
            assert int(float(scan["sum"])) == sum(i % 3 + 1 for i in range(N))
            invoice = http.post(f"/v1/contracts/{CONTRACT}/periods/{period}/close",
                                headers=auth("tok-operator"))
            assert invoice.status_code == 200, invoice.text
            assert invoice.json()["readings"] == N
    finally:
        stop(hub)
