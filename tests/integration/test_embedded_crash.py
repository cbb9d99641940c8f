"""Embedded ledger under kill -9: whole blocks survive, every acknowledged commit is there, the chain
verifies, and the ledger continues. The writer runs in a child process that is killed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub.ledger.verify import verify_ledger
from tests.helpers.embedded import PROVIDER, arg, make_signers, open_toy_ledger

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, threading
from tests.helpers.embedded import PROVIDER, CUSTOMER, arg, make_signers, open_toy_ledger
led = open_toy_ledger(sys.argv[1], make_signers(), block_timeout=0.002)
lock = threading.Lock()
def work(n):
    i = 0
    while True:
        c = led.submit("incr", [arg({"key": f"w{n}"})], as_org=PROVIDER if n % 2 else CUSTOMER)
        i += 1
        with lock:
            print(c.tx_id, c.block, n, i, flush=True)
for n in range(4):
    threading.Thread(target=work, args=(n,), daemon=True).start()
threading.Event().wait()
"""


def test_kill_9_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acknowledged: list[tuple[str, int, int, int]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tx_id, block, writer, count = line.split()
            acknowledged.append((tx_id, int(block), int(writer), int(count)))
            if len(acknowledged) >= 120:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert len(acknowledged) >= 120
    led = open_toy_ledger(path, make_signers())  # fresh keys: certified by the stored org CAs
    try:
        report = verify_ledger(led)
        assert report.ok, report.summary()
        for tx_id, block, _, _ in acknowledged:
            rec = led.tx(tx_id)
            assert (rec.status, rec.block) == ("VALID", block)
        # each writer's counter is at least what it was told, and exactly its number of valid increments
        for n in range(4):
            told = max((c for _, _, w, c in acknowledged if w == n), default=0)
            value = int(led.evaluate("get", [arg({"key": f"w{n}"})], as_org=PROVIDER) or b"0")
            history = json.loads(led.evaluate("history", [arg({"key": f"w{n}"})], as_org=PROVIDER))
            assert value >= told and value == len(history)
        height = led.height()
        commit = led.submit("incr", [arg({"key": "w0"})], as_org=PROVIDER)
        assert commit.block == height
        assert verify_ledger(led).ok
    finally:
        led.close()
