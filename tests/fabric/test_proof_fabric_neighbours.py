"""A Fabric block ships whole, so a proof transaction that shares its block with another contract's
transaction cannot be proven without handing out that transaction too (ADR 0034). On the real network: the
contract's asset registration is committed in the same block as another provider device's; the customer's
proof request is refused with 409 `proof_discloses_other_contracts`, and the auditor, who may read every
contract, gets the bundle, which verifies offline with the neighbour's envelope in it."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hub.audit.verify import verify_bundle
from hub.config import Settings
from hub.ledger.base import Endorsed
from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import PROVIDER, make_device_key, reading, sample_asset, sample_contract
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.story import Story

pytestmark = pytest.mark.fabric
PERIOD, START = last_month()
ATTEMPTS = 8  # pairs of registrations sent together until two share a block (the orderer cuts every 50 ms)


def _register_together(ledger: Any, assets: list[dict[str, Any]]) -> list[int]:
    """Endorse every registration first, then submit them at the same instant: the blocks they landed in."""
    prepared = [ledger.endorse("RegisterAsset", [json.dumps(a)], as_org=PROVIDER) for a in assets]
    start = threading.Barrier(len(prepared))

    def submit(item: Endorsed) -> int:
        start.wait()
        return ledger.submit_endorsed(item).block

    with ThreadPoolExecutor(len(prepared)) as pool:
        return list(pool.map(submit, prepared))


def test_a_block_shared_with_another_contract_is_refused_to_a_party_and_proven_to_the_auditor(
    fabric_network: FabricNetwork, tmp_path: Path
) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    story = Story(kind="fabric", ledger=ledger, suffix=uuid.uuid4().hex[:10], tmp=tmp_path)
    try:
        for attempt in range(ATTEMPTS):
            key, other = make_device_key(story.id(f"a{attempt}")), make_device_key(story.id(f"b{attempt}"))
            ours, theirs = story.id(f"dev-{attempt}"), story.id(f"neighbour-{attempt}")
            blocks = _register_together(ledger, [sample_asset(key, ours), sample_asset(other, theirs)])
            if blocks[0] == blocks[1]:
                shared = blocks[0]
                break
        else:
            pytest.fail(f"no two registrations sent together shared a block in {ATTEMPTS} attempts")
        with story.hub() as client:
            cid = story.id("ctr")
            r = client.post("/v1/contracts", json=sample_contract(id=cid, assets=[ours], start=START),
                            headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            r = client.post(f"/v1/contracts/{cid}/accept", headers=auth("tok-customer"))
            assert r.status_code == 200, r.text
            rs = [reading(story.id(f"r{i}"), "scan", "1", ts(PERIOD, 2 + i, 9, 0)) for i in range(3)]
            r = post_usage(client, usage(key, story.id("m1"), rs, device_id=ours))
            assert r.status_code == 202, r.text
            closed = client.post(f"/v1/contracts/{cid}/periods/{PERIOD}/close", headers=auth("tok-operator"))
            assert closed.status_code == 200, closed.text
            invoice_id = closed.json()["id"]

            refused = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-customer"))
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "proof_discloses_other_contracts"
            assert f"block {shared}" in refused.json()["detail"]

            got = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-auditor"))
            assert got.status_code == 200, got.text
            bundle = got.json()
        anchor = bytes(ledger.block(0).hash).hex()
    finally:
        ledger.close()
    block = next(b for b in bundle["blocks"] if b["number"] == shared)
    assert len(block["data"]) >= 2  # the neighbour's envelope travels with ours
    registration = next(t for t in bundle["transactions"] if t["function"] == "RegisterAsset")
    assert registration["block"] == shared
    neighbours = bundle["ledger"]["disclosed_neighbours"]
    assert len(neighbours) == 1 and neighbours[0][0] == shared and neighbours[0][1] != registration["index"]
    report = verify_bundle(copy.deepcopy(bundle), genesis_hash=anchor)
    assert report.ok, report.summary()
    assert report.checked["disclosed neighbours"] == 1
    assert report.checked["readings"] == 3 and report.checked["recomputed invoice"] == 1

    # the declaration can neither hide the neighbour nor be padded: both are named failures
    hidden = copy.deepcopy(bundle)
    del hidden["ledger"]["disclosed_neighbours"]
    padded = copy.deepcopy(bundle)
    padded["ledger"]["disclosed_neighbours"] = sorted([*neighbours, [shared, registration["index"]]])
    for changed in (hidden, padded):
        failures = {(f.part, f.check) for f in verify_bundle(changed, genesis_hash=anchor).failures}
        assert failures == {(f"block {shared}", "disclosure")}, failures
