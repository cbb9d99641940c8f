"""Embedded ledger: MVCC validation inside one block, phantoms, and many concurrent submitters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub.keys.signer import SoftwareSigner
from hub.ledger.base import TransactionInvalid
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.verify import verify_ledger
from tests.helpers.embedded import CUSTOMER, PROVIDER, arg, open_toy_ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(toy_ledger: EmbeddedLedger) -> EmbeddedLedger:
    """This module's tests run on the toy chaincode's ledger (tests/integration/conftest.py)."""
    return toy_ledger


def test_conflicting_read_writes_in_one_block_exactly_one_valid(ledger: EmbeddedLedger) -> None:
    ledger.submit("put", [arg({"key": "counter", "value": "5"})], as_org=PROVIDER)
    a = ledger.endorse("incr", [arg({"key": "counter"})], as_org=PROVIDER)
    b = ledger.endorse("incr", [arg({"key": "counter"})], as_org=CUSTOMER)
    ra, rb = ledger.order([a.envelope, b.envelope])
    assert ra.block == rb.block
    assert [ra.status, rb.status] == ["VALID", "MVCC_READ_CONFLICT"]
    assert ledger.evaluate("get", [arg({"key": "counter"})], as_org=PROVIDER) == b"6"
    blk = ledger.block(ra.block)
    assert blk.tx_ids == [a.tx_id, b.tx_id]
    assert blk.raw["validation"] == ["VALID", "MVCC_READ_CONFLICT"]
    # only the valid one emitted its event
    events = list(ledger.events(ra.block, timeout=0.05))
    assert [e.tx_id for e in events] == [a.tx_id]
    assert verify_ledger(ledger).ok


def test_read_of_absent_key_conflicts_with_its_creation(ledger: EmbeddedLedger) -> None:
    a = ledger.endorse("incr", [arg({"key": "new"})], as_org=PROVIDER)
    b = ledger.endorse("incr", [arg({"key": "new"})], as_org=PROVIDER)
    assert [r.status for r in ledger.order([a.envelope, b.envelope])] == ["VALID", "MVCC_READ_CONFLICT"]
    # and a delete in between makes a stale read invalid too
    c = ledger.endorse("incr", [arg({"key": "new"})], as_org=PROVIDER)
    ledger.submit("delete", [arg({"key": "new"})], as_org=PROVIDER)
    assert ledger.order([c.envelope])[0].status == "MVCC_READ_CONFLICT"
    # blind writes never conflict
    w1 = ledger.endorse("put", [arg({"key": "new", "value": "1"})], as_org=PROVIDER)
    w2 = ledger.endorse("put", [arg({"key": "new", "value": "2"})], as_org=PROVIDER)
    assert [r.status for r in ledger.order([w1.envelope, w2.envelope])] == ["VALID", "VALID"]
    assert ledger.evaluate("get", [arg({"key": "new"})], as_org=PROVIDER) == b"2"


def test_phantom_in_scanned_range_invalidates(ledger: EmbeddedLedger) -> None:
    ledger.submit("put", [arg({"key": "r/1", "value": "x"})], as_org=PROVIDER)
    count = ledger.endorse(
        "count_into", [arg({"start": "r/", "end": "r0", "target": "total"})], as_org=PROVIDER
    )
    insert = ledger.endorse("put", [arg({"key": "r/2", "value": "y"})], as_org=PROVIDER)
    assert [r.status for r in ledger.order([insert.envelope, count.envelope])] == [
        "VALID",
        "PHANTOM_READ_CONFLICT",
    ]
    # a write outside the range does not disturb it
    count2 = ledger.endorse(
        "count_into", [arg({"start": "r/", "end": "r0", "target": "total"})], as_org=PROVIDER
    )
    outside = ledger.endorse("put", [arg({"key": "s/1", "value": "z"})], as_org=PROVIDER)
    assert [r.status for r in ledger.order([outside.envelope, count2.envelope])] == ["VALID", "VALID"]
    assert ledger.evaluate("get", [arg({"key": "total"})], as_org=PROVIDER) == b"2"


def test_many_threads_submit_and_share_blocks(tmp_path: Path, signers: dict[str, SoftwareSigner]) -> None:
    led = open_toy_ledger(tmp_path / "ledger", signers, block_timeout=0.2, block_max_txs=16)
    try:
        start = led.height()

        def work(i: int) -> int:
            org = PROVIDER if i % 2 else CUSTOMER
            return led.submit(
                "put", [arg({"key": f"k{i:03d}", "value": str(i), "event": "Put"})], as_org=org
            ).block

        with ThreadPoolExecutor(max_workers=16) as pool:
            blocks = list(pool.map(work, range(200)))
        assert len(blocks) == 200
        used = led.height() - start
        assert used == len(set(blocks))
        assert used <= 100, f"200 transactions took {used} blocks"
        sizes = [len(led.block(n).tx_ids) for n in range(start, led.height())]
        assert sum(sizes) == 200 and max(sizes) > 1
        assert all(s <= 16 for s in sizes)
        for i in (0, 99, 199):
            assert led.evaluate("get", [arg({"key": f"k{i:03d}"})], as_org=PROVIDER) == str(i).encode()
        assert len(list(led.events(0, timeout=0.05))) == 200
        assert verify_ledger(led).ok
    finally:
        led.close()


def test_contended_counter_with_retries_counts_exactly(ledger: EmbeddedLedger) -> None:
    conflicts = 0
    lock = threading.Lock()

    def bump(_: int) -> None:
        nonlocal conflicts
        while True:
            try:
                ledger.submit("incr", [arg({"key": "hot"})], as_org=PROVIDER)
                return
            except TransactionInvalid as exc:
                assert exc.status == "MVCC_READ_CONFLICT"
                with lock:
                    conflicts += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(bump, range(40)))
    assert ledger.evaluate("get", [arg({"key": "hot"})], as_org=PROVIDER) == b"40"
    report = verify_ledger(ledger)
    assert report.ok, report.summary()
    assert report.transactions == 40 + conflicts
    assert report.valid_transactions == 40
