"""The `Ledger` conformance suite (tests/helpers/ledger_conformance.py, ADR 0058) on a real Fabric network
through the gateway client: the same checks tests/integration/test_ledger_conformance.py runs on the
embedded ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hub.config import Settings
from hub.ledger.base import Ledger
from hub.ledger.fabric import FabricLedger, open_fabric_ledger
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.ledger_conformance import CHECK_IDS, CHECKS

pytestmark = pytest.mark.fabric


@pytest.fixture(scope="module")
def ledger(fabric_network: FabricNetwork) -> Iterator[FabricLedger]:
    led = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    yield led
    led.close()


@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_fabric_ledger_conforms(ledger: FabricLedger, check: Callable[[Ledger], None]) -> None:
    check(ledger)
