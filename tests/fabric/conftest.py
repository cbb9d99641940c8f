"""Fixtures of the Fabric tier (pytest finds them by name; a module never imports them). The session's
network itself, `fabric_network`, is registered for the whole suite in tests/conftest.py.

- `ledger` (module scope): a FabricLedger (the hub's gateway client) on the session's network;
- `hsm_network` (module scope): a network whose nodes keep their keys on SoftHSM2 (ADR 0036): the
  session's own when that one is HSM-backed (LEDGERHUB_FABRIC_HSM=1) and `hsm_network_may_share` (True
  here), else one of the module's own. A module that changes the network's keys overrides
  `hsm_network_may_share` with False (test_hsm_retire).
- `consortium` (session scope): a network of its own for the tests that change the network for everyone
  on it (orgs join, channels are added, the chaincode is upgraded): test_consortium_fabric,
  test_channels_fabric and the hub on a pair channel share it, so the Fabric tier pays one extra `up`.
  Tests on it must not assume they are first: they look at what they changed, not at totals.
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


@pytest.fixture(scope="session")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricNetwork]:
    reason = admin.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    # node keys on SoftHSM2 tokens where the pkcs11 binaries are built (make fabric-bin builds them): the
    # joined org's peer must then get its key on a token too
    hsm_keys = not (admin.unavailable_reason(hsm.pkcs11_bin_dir()) or hsm.unavailable_reason())
    run_dir = tmp_path_factory.mktemp("fabric-consortium")
    port_base = free_port_base()
    info = manage.up(run_dir=run_dir, port_base=port_base, start_chaincode=True, hsm_keys=hsm_keys)
    layout = manage.make_layout(run_dir, port_base)
    first = recorded(layout.pids_dir)
    try:
        yield FabricNetwork(info=info, layout=layout, nodes=first)
    finally:
        nodes = [*first, *recorded(layout.pids_dir)]  # + the joined peer and the new chaincode server
        manage.down(run_dir)
        assert not leftovers(nodes), "processes left after network down"
