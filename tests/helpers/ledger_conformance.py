"""The `Ledger` conformance checks (ADR 0058): what every ledger the hub runs on must do, the same way.

Each check takes a ledger running the billing contract, acting for PROVIDER and CUSTOMER, and asserts
only through the `hub.ledger.base.Ledger` interface. The tier modules run every check against one ledger:
tests/integration/test_ledger_conformance.py (embedded) and tests/fabric/test_ledger_conformance_fabric.py
(a real Fabric network). The ledger may be shared with other tests: checks create their own ids and look
only at their own transactions and events.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from chaincode.errors import ChaincodeError
from hub.ledger.base import (
    ChaincodeEvent,
    ChaincodeRejected,
    Checkpoint,
    Commit,
    Endorsed,
    Ledger,
    LedgerError,
    LedgerNotFound,
    LedgerUnsupported,
)
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_asset, sample_contract

EVENT_WAIT = 60.0  # an event iterator's idle limit: it is left as soon as the awaited event arrives
HEX64 = set("0123456789abcdef")


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _asset(tag: str) -> dict[str, object]:
    return sample_asset(make_device_key(tag), f"dev-{tag}")


def _register(ledger: Ledger, tag: str) -> Commit:
    return ledger.submit("RegisterAsset", [json.dumps(_asset(tag))], as_org=PROVIDER)


def _propose(ledger: Ledger, tag: str) -> Commit:
    """A registered asset and a PROPOSED contract on it (the proposal emits `ContractProposed`)."""
    _register(ledger, tag)
    contract = sample_contract(id=f"ctr-{tag}", assets=[f"dev-{tag}"], start="2026-09-01")
    return ledger.submit("ProposeContract", [json.dumps(contract)], as_org=PROVIDER)


def _until(events: Iterator[ChaincodeEvent], last_tx: str, mine: set[str]) -> list[ChaincodeEvent]:
    """This check's events (tx ids in `mine`) in delivery order, read until `last_tx`'s event."""
    seen: list[ChaincodeEvent] = []
    for event in events:
        if event.tx_id in mine:
            seen.append(event)
        if event.tx_id == last_tx:
            return seen
    raise AssertionError(f"no event for {last_tx}; saw {[(e.block, e.tx_id[:8]) for e in seen]}")


def _second_copy_status(ledger: Ledger, commit: Commit, wait: float = 60.0) -> str:
    """The validation code of the second copy of `commit`'s transaction in a later block. On Fabric that
    block may be cut after the second submit answered (its commit status is the first copy's), so this
    waits for it, at most `wait` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + wait
    number = commit.block
    while True:
        while number + 1 < ledger.height():
            number += 1
            block = ledger.block(number)
            if commit.tx_id in block.tx_ids:
                return str(block.raw["validation"][block.tx_ids.index(commit.tx_id)])
        if time.monotonic() > deadline:
            raise AssertionError(f"no second copy of {commit.tx_id} after block {commit.block}")
        time.sleep(0.1)


# --- the checks ------------------------------------------------------------------------------------


def check_is_a_ledger(ledger: Ledger) -> None:
    """Every member of the interface is there (a runtime-checkable Protocol) and it names its network."""
    assert isinstance(ledger, Ledger)
    assert isinstance(ledger.network_id, str) and ledger.network_id


def check_submit_returns_the_commit(ledger: Ledger) -> None:
    """`submit` answers where the transaction landed, and the ledger agrees when asked."""
    tag = _tag()
    commit = _register(ledger, tag)
    assert isinstance(commit, Commit)
    assert len(commit.tx_id) == 64 and set(commit.tx_id) <= HEX64
    assert commit.status == "VALID" and commit.valid
    assert 1 <= commit.block < ledger.height()
    assert json.loads(commit.payload)["id"] == f"dev-{tag}"  # the chaincode's answer: the stored asset
    record = ledger.tx(commit.tx_id)
    assert (record.tx_id, record.block, record.status) == (commit.tx_id, commit.block, "VALID")
    assert (record.function, record.creator_msp_id) == ("RegisterAsset", PROVIDER)
    assert record.response == commit.payload
    assert {e.msp_id for e in record.endorsements} <= {PROVIDER, CUSTOMER} and record.endorsements


def check_evaluate_reads_without_writing(ledger: Ledger) -> None:
    tag = _tag()
    _register(ledger, tag)
    height = ledger.height()
    answer = json.loads(ledger.evaluate("GetAsset", [json.dumps({"id": f"dev-{tag}"})], as_org=CUSTOMER))
    assert answer["id"] == f"dev-{tag}" and answer["provider"] == PROVIDER
    assert ledger.height() == height  # a query orders nothing


def check_endorse_then_submit(ledger: Ledger) -> None:
    """Two steps: `endorse` orders nothing and answers an `Endorsed`; `submit_endorsed` commits it, and
    submitting the same `Endorsed` again answers the same commit without applying anything twice."""
    tag = _tag()
    _register(ledger, tag)
    contract = sample_contract(id=f"ctr-{tag}", assets=[f"dev-{tag}"], start="2026-09-01")
    height = ledger.height()
    endorsed = ledger.endorse("ProposeContract", [json.dumps(contract)], as_org=PROVIDER)
    assert isinstance(endorsed, Endorsed)
    assert endorsed.as_org == PROVIDER and len(endorsed.tx_id) == 64
    assert json.loads(endorsed.result)["id"] == f"ctr-{tag}"
    assert endorsed.endorsers and set(endorsed.endorsers) <= {PROVIDER, CUSTOMER}
    assert ledger.height() == height  # endorsed, not ordered
    with pytest.raises(ChaincodeRejected):  # nothing committed yet: the contract is unknown
        ledger.evaluate("GetContract", [json.dumps({"id": f"ctr-{tag}"})], as_org=PROVIDER)
    commit = ledger.submit_endorsed(endorsed)
    assert (commit.tx_id, commit.status, commit.payload) == (endorsed.tx_id, "VALID", endorsed.result)
    again = ledger.submit_endorsed(endorsed)
    assert (again.tx_id, again.block, again.status) == (commit.tx_id, commit.block, "VALID")
    assert ledger.tx(commit.tx_id).block == commit.block  # the first copy is the one that counts
    # the second copy was ordered too, and the peers marked it DUPLICATE_TXID (it changed nothing)
    assert _second_copy_status(ledger, commit) == "DUPLICATE_TXID"
    stored = json.loads(ledger.evaluate("GetContract", [json.dumps({"id": f"ctr-{tag}"})], as_org=PROVIDER))
    assert stored["status"] == "PROPOSED" and stored["proposed_tx"] == commit.tx_id


def check_refusal_keeps_its_code(ledger: Ledger) -> None:
    """A business refusal is `ChaincodeRejected` with the contract's code, on evaluate, endorse and
    submit alike, and nothing is ordered."""
    missing = json.dumps({"id": f"ctr-missing-{_tag()}"})
    height = ledger.height()
    with pytest.raises(ChaincodeRejected) as evaluated:
        ledger.evaluate("GetContract", [missing], as_org=PROVIDER)
    assert evaluated.value.code == "unknown_contract"
    assert isinstance(evaluated.value.error, ChaincodeError) and not evaluated.value.retryable
    body = [json.dumps({"contract_id": f"ctr-missing-{_tag()}"})]
    with pytest.raises(ChaincodeRejected) as submitted:
        ledger.submit("AcceptContract", body, as_org=CUSTOMER)
    assert submitted.value.code == "unknown_contract"
    with pytest.raises(ChaincodeRejected) as endorsed:
        ledger.endorse("AcceptContract", body, as_org=CUSTOMER)
    assert endorsed.value.code == "unknown_contract"
    assert isinstance(submitted.value, LedgerError)
    assert ledger.height() == height


def check_unknown_tx_and_block_are_not_found(ledger: Ledger) -> None:
    """`LedgerNotFound`, which is also the `KeyError` older callers catch; never another error."""
    unknown_tx = uuid.uuid4().hex * 2
    with pytest.raises(LedgerNotFound) as tx_info:
        ledger.tx(unknown_tx)
    assert isinstance(tx_info.value, KeyError) and isinstance(tx_info.value, LedgerError)
    assert unknown_tx in str(tx_info.value)
    with pytest.raises(KeyError):
        ledger.tx(unknown_tx)
    beyond = ledger.height() + 1000
    with pytest.raises(LedgerNotFound):
        ledger.block(beyond)
    with pytest.raises(LedgerNotFound):
        ledger.block_header(beyond)
    with pytest.raises(LedgerNotFound):
        ledger.block(-1)
    with pytest.raises(LedgerNotFound):
        next(iter(ledger.events(0, timeout=1.0, after_tx_id=unknown_tx)))


def check_events_resume_from_a_checkpoint(ledger: Ledger) -> None:
    """Events resumed after a checkpoint (block + tx id of the last one handled): the later ones all
    come, in commit order, once each; the checkpoint's own and earlier ones do not come again."""
    commits = [_propose(ledger, _tag()) for _ in range(3)]
    mine = {c.tx_id for c in commits}
    first = _until(ledger.events(commits[0].block, timeout=EVENT_WAIT), commits[-1].tx_id, mine)
    assert [e.tx_id for e in first] == [c.tx_id for c in commits]
    assert [e.block for e in first] == [c.block for c in commits]
    assert {e.name for e in first} == {"ContractProposed"}
    checkpoint = Checkpoint.after(first[0])
    assert checkpoint == Checkpoint(commits[0].block, commits[0].tx_id)
    resumed = _until(
        ledger.events(checkpoint.block, timeout=EVENT_WAIT, after_tx_id=checkpoint.tx_id),
        commits[-1].tx_id,
        mine,
    )
    assert [e.tx_id for e in resumed] == [c.tx_id for c in commits[1:]]
    later = _propose(ledger, _tag())  # and a new one after the resume point arrives too
    cp = Checkpoint.after(resumed[-1])
    tail = _until(
        ledger.events(cp.block, timeout=EVENT_WAIT, after_tx_id=cp.tx_id), later.tx_id, mine | {later.tx_id}
    )
    assert [e.tx_id for e in tail] == [later.tx_id]


def check_height_block_and_tx_agree(ledger: Ledger) -> None:
    """The chain read back: the commit's block lists the transaction at the record's index, headers
    link by hash, and `block_header` is the header of `block`."""
    commit = _register(ledger, _tag())
    assert ledger.height() > commit.block
    block = ledger.block(commit.block)
    record = ledger.tx(commit.tx_id)
    assert block.number == commit.block and block.tx_ids[record.index] == commit.tx_id
    before = ledger.block(commit.block - 1)
    assert block.previous_hash == before.hash
    header = ledger.block_header(commit.block)
    assert (header.number, header.hash, header.previous_hash, header.data_hash) == (
        block.number,
        block.hash,
        block.previous_hash,
        block.data_hash,
    )
    assert header.raw
    assert ledger.block_header(0).hash == ledger.block(0).hash


def check_idempotent_replay(ledger: Ledger) -> None:
    """The same business operation submitted twice (a client that lost the first answer) commits twice
    but applies once: the second answer is the stored record, which keeps the first transaction's id."""
    tag = _tag()
    first = _register(ledger, tag)
    second = _register(ledger, tag)
    assert second.tx_id != first.tx_id and second.status == "VALID"
    assert json.loads(second.payload) == json.loads(first.payload)
    stored = json.loads(ledger.evaluate("GetAsset", [json.dumps({"id": f"dev-{tag}"})], as_org=PROVIDER))
    assert stored["registered_tx"] == first.tx_id


def check_verify_reports_or_says_unsupported(ledger: Ledger) -> None:
    """`verify` checks the chain where the hub can, and says so with `LedgerUnsupported` where not."""
    try:
        report = ledger.verify()
    except LedgerUnsupported as exc:
        assert str(exc)
        return
    assert report.ok, report.summary()
    assert report.network_id == ledger.network_id and report.blocks == ledger.height()


CHECKS: list[Callable[[Ledger], None]] = [
    check_is_a_ledger,
    check_submit_returns_the_commit,
    check_evaluate_reads_without_writing,
    check_endorse_then_submit,
    check_refusal_keeps_its_code,
    check_unknown_tx_and_block_are_not_found,
    check_events_resume_from_a_checkpoint,
    check_height_block_and_tx_agree,
    check_idempotent_replay,
    check_verify_reports_or_says_unsupported,
]
CHECK_IDS = [c.__name__.removeprefix("check_") for c in CHECKS]
