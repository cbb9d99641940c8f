"""Fixtures of the Fabric tier (pytest finds them by name; a module never imports them). The session's
network itself, `fabric_network`, is registered for the whole suite in tests/conftest.py.

- `ledger` (module scope): a FabricLedger (the hub's gateway client) on the session's network;
- `hsm_network` (module scope): a network whose nodes keep their keys on SoftHSM2 (ADR 0036): the
  session's own when that one is HSM-backed (LEDGERHUB_FABRIC_HSM=1) and `hsm_network_may_share` (True
  here), else one of the module's own. A module that changes the network's keys overrides
  `hsm_network_may_share` with False (test_hsm_retire).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.config import Settings
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from network import admin, hsm, manage
from network.procs import free_port_base, recorded
from tests.helpers.fabric_network import FabricNetwork, leftovers, skip_or_fail


@pytest.fixture(scope="module")
def ledger(fabric_network: FabricNetwork) -> Iterator[FabricLedger]:
    led = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    yield led
    led.close()


@pytest.fixture(scope="module")
def hsm_network_may_share() -> bool:
    return True


@pytest.fixture(scope="module")
def hsm_network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, hsm_network_may_share: bool
) -> Iterator[FabricNetwork]:
    reason = admin.unavailable_reason(hsm.pkcs11_bin_dir()) or hsm.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    if hsm_network_may_share and hsm.default_hsm():  # the session's network is HSM-backed already
        yield request.getfixturevalue("fabric_network")
        return
    run_dir = tmp_path_factory.mktemp("fabric-hsm")
    port_base = free_port_base()
    info = manage.up(run_dir=run_dir, port_base=port_base, start_chaincode=True, hsm_keys=True)
    layout = manage.make_layout(run_dir, port_base)
    nodes = recorded(layout.pids_dir)
    try:
        yield FabricNetwork(info=info, layout=layout, nodes=nodes)
    finally:
        manage.down(run_dir)
        assert not leftovers(nodes), "processes left after network down"
