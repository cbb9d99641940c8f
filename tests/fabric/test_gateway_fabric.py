"""The gateway client against a real Fabric network: events reach the hub and resume from a block, a
transaction endorsed by one org where the key needs two is invalidated by the peers, refusals keep their
code, and blocks/transactions read back through QSCC chain and parse."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from hub.ledger.base import ChaincodeEvent, ChaincodeRejected, LedgerNotFound, TransactionInvalid
from hub.ledger.fabric import FabricLedger
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract

pytestmark = pytest.mark.fabric
EVENT_WAIT = 60.0  # the iterator's idle limit: generous, it ends as soon as the event is found


def _proposed_contract(ledger: FabricLedger) -> tuple[str, int, str]:
    """A registered asset and a PROPOSED contract; returns (contract id, proposal block, proposal tx)."""
    tag = uuid.uuid4().hex[:8]
    key = make_device_key(tag)
    device, contract_id = f"dev-{tag}", f"ctr-{tag}"
    ledger.submit("RegisterAsset", [json.dumps(sample_asset(key, device))], as_org=PROVIDER)
    contract = sample_contract(id=contract_id, assets=[device], start="2026-09-01")
    commit = ledger.submit("ProposeContract", [json.dumps(contract)], as_org=PROVIDER)
    return contract_id, commit.block, commit.tx_id


def _find(events: Iterator[ChaincodeEvent], tx_id: str) -> tuple[ChaincodeEvent, list[ChaincodeEvent]]:
    seen = []
    for event in events:
        seen.append(event)
        if event.tx_id == tx_id:
            return event, seen
    raise AssertionError(f"no event for {tx_id}; saw {[(e.block, e.name) for e in seen]}")


def test_events_reach_the_hub_and_resume_after_a_checkpoint(ledger: FabricLedger) -> None:
    contract_id, block, tx_id = _proposed_contract(ledger)
    event, _ = _find(ledger.events(block, timeout=EVENT_WAIT), tx_id)
    assert (event.name, event.block) == ("ContractProposed", block)
    assert json.loads(event.payload) == {"contract_id": contract_id}
    accepted = ledger.submit("AcceptContract", [json.dumps({"contract_id": contract_id})], as_org=CUSTOMER)
    # resume from the checkpoint "last block handled + 1": the proposal's event is not delivered again
    event, seen = _find(ledger.events(block + 1, timeout=EVENT_WAIT), accepted.tx_id)
    assert event.name == "ContractActivated" and event.block == accepted.block
    assert tx_id not in {e.tx_id for e in seen}
    assert all(e.block > block for e in seen)


def test_one_org_endorsing_a_key_that_needs_two_is_invalidated_by_the_peers(ledger: FabricLedger) -> None:
    contract_id, _, _ = _proposed_contract(ledger)  # the contract key now needs provider AND customer
    body = [json.dumps({"contract_id": contract_id})]
    envelope, tx_id = ledger.endorse("AcceptContract", body, as_org=CUSTOMER, endorsing_orgs=[CUSTOMER])
    with pytest.raises(TransactionInvalid) as info:
        ledger.submit_prepared(envelope, tx_id, as_org=CUSTOMER)
    assert info.value.status == "ENDORSEMENT_POLICY_FAILURE"
    assert ledger.commit_status(tx_id, as_org=PROVIDER)[1] == "ENDORSEMENT_POLICY_FAILURE"
    assert ledger.tx(tx_id).status == "ENDORSEMENT_POLICY_FAILURE"
    contract = json.loads(ledger.evaluate("GetContract", [json.dumps({"id": contract_id})], as_org=PROVIDER))
    assert contract["status"] == "PROPOSED"  # nothing of the invalid transaction was applied
    # with the gateway collecting the endorsements itself, both orgs endorse and it commits
    assert ledger.submit("AcceptContract", body, as_org=CUSTOMER).valid


def test_refusals_keep_their_code_and_details(ledger: FabricLedger) -> None:
    contract_id, _, _ = _proposed_contract(ledger)
    with pytest.raises(ChaincodeRejected) as info:
        ledger.submit("AcceptContract", [json.dumps({"contract_id": contract_id})], as_org=PROVIDER)
    assert info.value.code == "forbidden"  # only the customer may accept
    with pytest.raises(ChaincodeRejected) as info:
        ledger.evaluate("GetContract", [json.dumps({"id": "no-such-contract"})], as_org=PROVIDER)
    assert info.value.code == "unknown_contract"


def test_blocks_chain_and_transactions_parse(ledger: FabricLedger) -> None:
    _, block, tx_id = _proposed_contract(ledger)
    assert ledger.height() > block
    this, previous = ledger.block(block), ledger.block(block - 1)
    assert this.previous_hash == previous.hash  # our header hash is Fabric's
    assert tx_id in this.tx_ids
    record = ledger.tx(tx_id)
    assert (record.block, record.status, record.function) == (block, "VALID", "ProposeContract")
    assert record.tx_id == tx_id and this.tx_ids[record.index] == tx_id
    assert record.creator_msp_id == PROVIDER
    assert {e.msp_id for e in record.endorsements} & {PROVIDER, CUSTOMER}
    assert record.event is not None and record.event.name == "ContractProposed"
    assert record.raw["envelope"]
    with pytest.raises(LedgerNotFound):
        ledger.tx("0" * 64)


def test_a_forward_dated_proposal_is_refused_by_the_real_peers(ledger: FabricLedger) -> None:
    """Issue 13 item 2 on real peers: a client that stamps its proposal an hour ahead (to close a period
    early, say) is refused at endorsement with `tx_timestamp_skew` (the chaincode compares the timestamp
    with the endorsing peer's host clock), nothing is written, and the same call stamped now goes through."""
    import datetime as dt

    contract_id, _block, _tx = _proposed_contract(ledger)
    accept = [json.dumps({"contract_id": contract_id})]
    height = ledger.height()
    for skew in (dt.timedelta(hours=1), -dt.timedelta(hours=1)):
        with pytest.raises(ChaincodeRejected) as refused:
            ledger.submit("AcceptContract", accept, as_org=CUSTOMER, timestamp=dt.datetime.now(dt.UTC) + skew)
        assert refused.value.code == "tx_timestamp_skew"
    assert ledger.height() == height  # refused at endorsement: nothing was ordered
    contract = json.loads(ledger.evaluate("GetContract", [json.dumps({"id": contract_id})], as_org=CUSTOMER))
    assert contract["status"] == "PROPOSED"
    assert ledger.submit("AcceptContract", accept, as_org=CUSTOMER).valid
