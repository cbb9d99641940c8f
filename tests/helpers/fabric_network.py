"""The `fabric_network` session fixture: one real Fabric network (native binaries) per test session.

Use it from any test module (tests/conftest.py registers it once for the whole session; do not import the
fixture function into a module, which would make that module bring up a network of its own):

    from tests.helpers.fabric_network import FabricNetwork

    @pytest.mark.fabric
    def test_x(fabric_network):
        provider = fabric_network.info["orgs"]["provider"]   # parsed network.json
        ...

It brings the network up once per session (orderer, three peers, channel `billing`, chaincode `billing`
committed), and
starts the project's chaincode server (`python -m chaincode`) with TLS, so submits work. At session end it
stops everything and checks that no process is left. Without the Fabric binaries it skips, loudly, with the
reason network/install.sh recorded; with LEDGERHUB_FABRIC_REQUIRED=1 it fails instead.

Environment: LEDGERHUB_FABRIC_PORT_BASE pins the ports (default: the first free block from 27050 upward, so a
developer's own network on 17050 is left alone); LEDGERHUB_FABRIC_NO_CHAINCODE=1 deploys the chaincode but
starts no server (for tests that bring their own); LEDGERHUB_FABRIC_HSM=1 brings it up with the nodes'
signing keys on SoftHSM2 tokens (`ledgerhub network up --hsm`, ADR 0036).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from network import admin, hsm, manage
from network.layout import Layout, PeerOrg
from network.procs import NodeProcess, free_port_base, group_alive, recorded, run


@dataclass
class FabricNetwork:
    """A running network: `info` is network.json parsed; helpers run the Fabric CLI as an org's admin."""

    info: dict[str, Any]
    layout: Layout
    nodes: list[NodeProcess]

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    @property
    def network_json(self) -> Path:
        return self.layout.network_json

    def org(self, key: str) -> PeerOrg:
        return self.layout.org(key)

    def admin_env(self, key: str) -> dict[str, str]:
        return admin.peer_admin_env(self.layout, self.org(key))

    def peer_cli(self, key: str, *args: str, timeout: float = 60.0) -> str:
        """`peer <args>` as `key`'s Admin against `key`'s peer; raises NetworkError on failure."""
        return run([str(self.layout.binary("peer")), *args], self.admin_env(key), timeout=timeout)

    def channel_height(self, key: str) -> int:
        return admin.channel_height(self.layout, self.admin_env(key))

    def query_committed(self, key: str) -> dict[str, Any]:
        out = self.peer_cli(
            key,
            "lifecycle",
            "chaincode",
            "querycommitted",
            "--channelID",
            self.info["channel"],
            "--name",
            self.info["chaincode"]["name"],
            "-O",
            "json",
        )
        return json.loads(out[out.index("{") : out.rindex("}") + 1])

    def status(self) -> dict[str, dict[str, Any]]:
        return manage.status(self.run_dir)


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when the Fabric tier is required (LEDGERHUB_FABRIC_REQUIRED=1)."""
    if os.environ.get("LEDGERHUB_FABRIC_REQUIRED") == "1":
        pytest.fail(f"LEDGERHUB_FABRIC_REQUIRED=1 but {reason}")
    pytest.skip(reason)


def leftovers(nodes: list[NodeProcess]) -> list[str]:
    """Names of nodes (or their process groups) still running."""
    return [n.name for n in nodes if n.is_alive() or group_alive(n.pid)]


@pytest.fixture(scope="session", name="fabric_network")
def fabric_network_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricNetwork]:
    reason = admin.unavailable_reason()
    if not reason and hsm.default_hsm():  # LEDGERHUB_FABRIC_HSM=1: node keys on SoftHSM2 (ADR 0036)
        reason = admin.unavailable_reason(hsm.pkcs11_bin_dir()) or hsm.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    base_env = os.environ.get("LEDGERHUB_FABRIC_PORT_BASE")
    port_base = int(base_env) if base_env else free_port_base()
    run_dir = tmp_path_factory.mktemp("fabric-network")
    start_cc = os.environ.get("LEDGERHUB_FABRIC_NO_CHAINCODE") != "1"
    info = manage.up(run_dir=run_dir, port_base=port_base, start_chaincode=start_cc)
    layout = manage.make_layout(run_dir, port_base)
    nodes = recorded(layout.pids_dir)
    try:
        yield FabricNetwork(info=info, layout=layout, nodes=nodes)
    finally:
        manage.down(run_dir)
        left = leftovers(nodes)
        assert not left, f"processes left after network down: {left}"
