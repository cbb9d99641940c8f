"""`down` leaves nothing behind: its own network (not the session one), brought up, then stopped."""

from __future__ import annotations

import os

import pytest

from network import admin, manage
from network.procs import free_port_base, port_open, recorded
from tests.helpers.fabric_network import leftovers

pytestmark = [pytest.mark.fabric, pytest.mark.slow]


def test_down_stops_every_process_and_frees_ports(tmp_path) -> None:
    reason = admin.unavailable_reason()
    if reason:
        if os.environ.get("LEDGERHUB_FABRIC_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    base = free_port_base(first=37050)
    run_dir = tmp_path / "net"
    info = manage.up(run_dir=run_dir, port_base=base, start_chaincode=True)
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

    stopped = manage.down(run_dir)

    assert sorted(stopped) == sorted(n.name for n in nodes)
    assert leftovers(nodes) == []
    assert not run_dir.exists()
    assert [p for p in layout.all_ports() if port_open(p)] == []
