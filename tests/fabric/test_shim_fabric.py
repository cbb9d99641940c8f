"""The Python chaincode shim under real Fabric peers (the network's `python -m chaincode` server).

Shows: the peers register and get answers from the real contract; well over 100 transactions in flight at
once all commit; an idle gap longer than the peer's keepalive is survived on the same stream.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub.ledger.base import ChaincodeRejected
from hub.ledger.fabric import FabricLedger
from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset
from tests.helpers.fabric_network import FabricNetwork

pytestmark = pytest.mark.fabric
CONCURRENT = 120
# gRPC's default server policy tolerates 2 "bad" pings and then sends GOAWAY too_many_pings; the peer's
# client pings every 60 s. 200 s of silence is > 3 pings: without our server options the stream would die.
IDLE_SECONDS = 200


def _chaincode_log(fabric_network: FabricNetwork) -> Path:
    if not fabric_network.info["chaincode"].get("server_started_by_network"):
        pytest.skip("the network did not start the chaincode server (LEDGERHUB_FABRIC_NO_CHAINCODE=1)")
    return fabric_network.layout.logs_dir / "chaincode.log"


def _asset(tag: str) -> str:
    return json.dumps(sample_asset(make_device_key(tag), f"dev-{tag}"))


def test_peer_connects_and_the_real_contract_answers(
    fabric_network: FabricNetwork, ledger: FabricLedger
) -> None:
    tag = uuid.uuid4().hex[:8]
    with pytest.raises(ChaincodeRejected) as info:
        ledger.evaluate("GetAsset", [json.dumps({"id": f"dev-{tag}"})], as_org=PROVIDER)
    assert info.value.code == "unknown_asset"  # a 404-class refusal made it through peer and gateway intact
    commit = ledger.submit("RegisterAsset", [_asset(tag)], as_org=PROVIDER)
    assert commit.valid
    stored = json.loads(ledger.evaluate("GetAsset", [json.dumps({"id": f"dev-{tag}"})], as_org=PROVIDER))
    assert stored["id"] == f"dev-{tag}" and stored["provider"] == PROVIDER
    log = _chaincode_log(fabric_network).read_text()
    assert fabric_network.info["chaincode"]["package_id"] in log  # the server registered as the package id
    assert "peer stream opened" in log


def test_more_than_a_hundred_transactions_in_flight_all_commit(ledger: FabricLedger) -> None:
    tags = [f"conc-{uuid.uuid4().hex[:6]}-{i}" for i in range(CONCURRENT)]
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        commits = list(pool.map(lambda t: ledger.submit("RegisterAsset", [_asset(t)], as_org=PROVIDER), tags))
    assert all(c.valid for c in commits)
    assert len({c.tx_id for c in commits}) == CONCURRENT
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        answers = list(
            pool.map(
                lambda t: ledger.evaluate("GetAsset", [json.dumps({"id": f"dev-{t}"})], as_org=PROVIDER), tags
            )
        )
    assert [json.loads(a)["id"] for a in answers] == [f"dev-{t}" for t in tags]


@pytest.mark.slow
def test_idle_gap_longer_than_the_peer_keepalive_is_survived(
    fabric_network: FabricNetwork, ledger: FabricLedger
) -> None:
    log_file = _chaincode_log(fabric_network)
    assert ledger.submit("RegisterAsset", [_asset(uuid.uuid4().hex[:8])], as_org=PROVIDER).valid
    before = log_file.read_text()
    time.sleep(IDLE_SECONDS)  # the subject of the test is silence itself, not a timing threshold
    assert ledger.submit("RegisterAsset", [_asset(uuid.uuid4().hex[:8])], as_org=PROVIDER).valid
    after = log_file.read_text()
    # the same streams served both transactions: none closed, none re-opened, no GOAWAY
    assert after.count("peer stream closed") == before.count("peer stream closed")
    assert after.count("peer stream opened") == before.count("peer stream opened")
    assert "too_many_pings" not in after
