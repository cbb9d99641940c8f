"""The user's path, `ledgerhub network up --start-chaincode` / `status` / `down` as commands on real
binaries, on a network of its own (not the session one): `up` prints network.json (on first contact it timed
out parsing the peer CLI's stderr log lines as JSON), `status` reports every node healthy, and `down` leaves
nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from network import admin, manage
from network.procs import free_port_base, port_open, recorded
from tests.helpers.fabric_network import leftovers, skip_or_fail

pytestmark = [pytest.mark.fabric, pytest.mark.slow]


def test_down_stops_every_process_and_frees_ports(tmp_path) -> None:
    reason = admin.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    base = free_port_base(first=37050)
    run_dir = tmp_path / "net"
    cli = [sys.executable, "-m", "network.cli"]
    where = ["--run-dir", str(run_dir)]
    up = subprocess.run(
        [*cli, "up", "--start-chaincode", *where, "--port-base", str(base)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    info = json.loads(up.stdout)
    assert info["channel"] == "billing" and info["chaincode"]["server_started_by_network"]
    status = subprocess.run([*cli, "status", *where], capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count(" up healthy") == 4  # orderer and three peers; the chaincode has no /healthz
    layout = manage.make_layout(run_dir, base)
    nodes = recorded(layout.pids_dir)
    assert {n.name for n in nodes} == {
        "orderer",
        "peer-provider",
        "peer-customer",
        "peer-auditor",
        "chaincode",
    }
    assert all(n.is_alive() for n in nodes)
    assert manage.up(run_dir=run_dir, port_base=base) == info  # idempotent while it runs

    down = subprocess.run([*cli, "down", *where], capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    stopped = down.stdout.strip().removeprefix("stopped: ").split(", ")

    assert sorted(stopped) == sorted(n.name for n in nodes)
    assert leftovers(nodes) == []
    assert not run_dir.exists()
    assert [p for p in layout.all_ports() if port_open(p)] == []
