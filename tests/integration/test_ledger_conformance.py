"""The `Ledger` conformance suite (tests/helpers/ledger_conformance.py, ADR 0058) on the embedded ledger,
running the real billing contract; the same checks run on a real Fabric network in
tests/fabric/test_ledger_conformance_fabric.py. Plus what only the embedded ledger can stage: two events in
one block, resumed between them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.ledger.base import Checkpoint, Ledger
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset, sample_contract
from tests.helpers.embedded import CUSTOMER, make_signers
from tests.helpers.ledger_conformance import CHECK_IDS, CHECKS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLedger]:
    led = EmbeddedLedger(
        tmp_path_factory.mktemp("conformance") / "ledger",
        make_signers(),
        chaincode_orgs=(PROVIDER, CUSTOMER),
        synchronous="OFF",
    )
    yield led
    led.close()


@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_embedded_ledger_conforms(ledger: EmbeddedLedger, check: Callable[[Ledger], None]) -> None:
    check(ledger)


def test_resume_inside_a_block_delivers_the_rest_of_that_block_once(tmp_path: Path) -> None:
    """Two proposals ordered into one block: a checkpoint at the first resumes with the second (same
    block), then the next block; the first is not delivered again."""
    signers = make_signers()
    led = EmbeddedLedger(tmp_path / "l", signers, chaincode_orgs=(PROVIDER, CUSTOMER), synchronous="OFF")
    try:
        endorsed = []
        for tag in ("a", "b"):
            led.submit(
                "RegisterAsset",
                [json.dumps(sample_asset(make_device_key(tag), f"dev-{tag}"))],
                as_org=PROVIDER,
            )
            contract = sample_contract(id=f"ctr-{tag}", assets=[f"dev-{tag}"], start="2026-09-01")
            endorsed.append(led.endorse("ProposeContract", [json.dumps(contract)], as_org=PROVIDER))
        results = led.order([e.envelope for e in endorsed])
        assert [r.status for r in results] == ["VALID", "VALID"] and results[0].block == results[1].block
        asset = sample_asset(make_device_key("c"), "dev-c")
        led.submit("RegisterAsset", [json.dumps(asset)], as_org=PROVIDER)
        contract = sample_contract(id="ctr-c", assets=["dev-c"], start="2026-09-01")
        third = led.submit("ProposeContract", [json.dumps(contract)], as_org=PROVIDER)
        events = list(led.events(0, timeout=0.5))
        assert [e.tx_id for e in events] == [endorsed[0].tx_id, endorsed[1].tx_id, third.tx_id]
        cp = Checkpoint.after(events[0])
        resumed = list(led.events(cp.block, timeout=0.5, after_tx_id=cp.tx_id))
        assert [e.tx_id for e in resumed] == [endorsed[1].tx_id, third.tx_id]
        # the checkpoint wins over an earlier since_block, as on Fabric's gateway
        assert [e.tx_id for e in led.events(0, timeout=0.5, after_tx_id=events[1].tx_id)] == [third.tx_id]
    finally:
        led.close()
