"""Embedded ledger on disk: restart, identities, corruption detected by verification, resumable events."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from hub.config import Settings
from hub.keys.signer import SoftwareSigner
from hub.ledger import open_ledger
from hub.ledger.base import ChaincodeEvent, Ledger, LedgerNotFound
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.embedded.identity import issue_cert, make_org_ca
from hub.ledger.verify import verify_ledger
from tests.helpers.embedded import AUDITOR, CUSTOMER, PROVIDER, arg, make_signers, open_toy_ledger

pytestmark = pytest.mark.integration


def _fill(led: EmbeddedLedger) -> list[str]:
    ids = [
        led.submit("put", [arg({"key": f"k{i}", "value": str(i), "event": "Put"})], as_org=PROVIDER).tx_id
        for i in range(4)
    ]
    led.submit("lock", [arg({"key": "k0", "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)
    ids.append(led.submit("incr", [arg({"key": "n"})], as_org=CUSTOMER).tx_id)
    led.submit("delete", [arg({"key": "k3"})], as_org=PROVIDER)
    ids.append(led.submit("put", [arg({"key": "k0", "value": "both"})], as_org=CUSTOMER).tx_id)
    return ids


def _snapshot(led: EmbeddedLedger) -> tuple:
    blocks = [led.block(n) for n in range(led.height())]
    return led.network_id, blocks, list(led.state())


def test_reopen_restores_everything(tmp_path: Path) -> None:
    signers = make_signers()
    path = tmp_path / "ledger"
    led = open_toy_ledger(path, signers)
    ids = _fill(led)
    before = _snapshot(led)
    records = [led.tx(t) for t in ids]
    certs = {org: led.certificate(org) for org in signers}
    led.close()

    led = open_toy_ledger(path, signers)
    try:
        assert _snapshot(led) == before
        assert [led.tx(t) for t in ids] == records
        assert {org: led.certificate(org) for org in signers} == certs
        report = verify_ledger(led)
        assert report.ok, report.summary()
        assert report.blocks == led.height() and report.valid_transactions == len(before[1]) - 1
        # the chain continues from the stored tip, with the stored policies
        commit = led.submit("put", [arg({"key": "k0", "value": "again"})], as_org=PROVIDER)
        assert led.block(commit.block).previous_hash == before[1][-1].hash
        assert sorted(e.msp_id for e in led.tx(commit.tx_id).endorsements) == [CUSTOMER, PROVIDER]
        assert verify_ledger(led).ok
    finally:
        led.close()


def test_identities_new_key_and_foreign_certificate(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    signers = make_signers()
    open_toy_ledger(path, signers).close()
    # a rotated customer key without a certificate is certified by the stored org CA
    rotated = dict(signers, **{CUSTOMER: SoftwareSigner()})
    led = open_toy_ledger(path, rotated)
    try:
        commit = led.submit("put", [arg({"key": "a", "value": "1"})], as_org=CUSTOMER)
        assert verify_ledger(led).ok
        assert led.tx(commit.tx_id).creator_cert == led.certificate(CUSTOMER)
    finally:
        led.close()
    # a certificate from a CA the network does not know is refused at open
    ca_key, ca_cert = make_org_ca(PROVIDER)
    stranger = SoftwareSigner()
    stranger.set_certificate(issue_cert(ca_key, ca_cert, PROVIDER, stranger.public_key()))
    with pytest.raises(ValueError, match="not trusted"):
        open_toy_ledger(path, dict(signers, **{PROVIDER: stranger}))
    # an org that is not a member
    with pytest.raises(ValueError, match="not a member"):
        open_toy_ledger(path, dict(signers, OtherMSP=SoftwareSigner()))
    # a wrong network id
    with pytest.raises(ValueError, match="is network"):
        open_toy_ledger(path, signers, network_id="someone-else")


def test_signers_with_their_own_certificates(tmp_path: Path) -> None:
    ca = {org: make_org_ca(org) for org in (PROVIDER, CUSTOMER)}
    signers = {}
    for org, (key, cert) in ca.items():
        s = SoftwareSigner()
        s.set_certificate(issue_cert(key, cert, org, s.public_key()))
        signers[org] = s
    led = open_toy_ledger(tmp_path / "l", signers, ca_certs={org: [c] for org, (_, c) in ca.items()})
    try:
        led.submit("lock", [arg({"key": "x", "orgs": [PROVIDER, CUSTOMER]})], as_org=PROVIDER)
        led.submit("put", [arg({"key": "x", "value": "2"})], as_org=CUSTOMER)
        assert led.certificate(CUSTOMER) == signers[CUSTOMER].certificate().public_bytes(Encoding.PEM)
        assert led.genesis.orgs[CUSTOMER] == [ca[CUSTOMER][1].public_bytes(Encoding.PEM)]
        assert verify_ledger(led).ok
        assert not (tmp_path / "l" / "embedded-ca").exists()  # no CA keys made for certified signers
    finally:
        led.close()


def _corrupt(path: Path, sql: str, params: tuple) -> None:
    conn = sqlite3.connect(path / "ledger.sqlite")
    with conn:
        conn.execute(sql, params)
    conn.close()


def _flip(blob: bytes, pos: int) -> bytes:
    return blob[:pos] + bytes([blob[pos] ^ 0x01]) + blob[pos + 1 :]


def test_verify_names_a_corrupted_transaction(tmp_path: Path) -> None:
    signers = make_signers()
    path = tmp_path / "ledger"
    led = open_toy_ledger(path, signers)
    ids = _fill(led)
    target = led.tx(ids[1])
    led.close()
    conn = sqlite3.connect(path / "ledger.sqlite")
    (env,) = conn.execute("SELECT envelope FROM txs WHERE tx_id = ?", (target.tx_id,)).fetchone()
    conn.close()
    # flip one byte inside the stored response (the written value)
    pos = bytes(env).index(b'"writes"') + 12
    _corrupt(path, "UPDATE txs SET envelope = ? WHERE tx_id = ?", (_flip(bytes(env), pos), target.tx_id))
    led = open_toy_ledger(path, signers)
    try:
        report = verify_ledger(led)
        assert not report.ok
        assert report.failed_blocks() == [target.block]
        assert report.failed_txs() == [target.tx_id]
        checks = {p.check for p in report.problems if p.block == target.block}
        assert {"data_hash", "validation"} <= checks
        assert f"block {target.block}" in report.summary() and target.tx_id in report.summary()
    finally:
        led.close()


def test_verify_names_a_corrupted_header_and_state(tmp_path: Path) -> None:
    signers = make_signers()
    path = tmp_path / "ledger"
    led = open_toy_ledger(path, signers)
    _fill(led)
    height = led.height()
    led.close()
    conn = sqlite3.connect(path / "ledger.sqlite")
    (header,) = conn.execute("SELECT header FROM blocks WHERE number = 2").fetchone()
    conn.close()
    _corrupt(path, "UPDATE blocks SET header = ? WHERE number = 2", (_flip(bytes(header), 30),))
    _corrupt(path, "UPDATE state SET value = ? WHERE key = ?", (b"tampered", b"k1"))
    _corrupt(path, "UPDATE txs SET status = 'VALID' WHERE block = ?", (height - 1,))  # fine: it was valid
    led = open_toy_ledger(path, signers)
    try:
        report = verify_ledger(led)
        by_check = {(p.check, p.block) for p in report.problems}
        assert ("block_hash", 2) in by_check
        assert ("hash_link", 3) in by_check
        assert any(p.check == "state" and "'k1'" in p.detail for p in report.problems)
        assert report.failed_blocks() == [2, 3]
    finally:
        led.close()


def test_verify_detects_a_flipped_validation_code(tmp_path: Path) -> None:
    signers = make_signers()
    path = tmp_path / "ledger"
    led = open_toy_ledger(path, signers)
    a = led.endorse("incr", [arg({"key": "c"})], as_org=PROVIDER)
    b = led.endorse("incr", [arg({"key": "c"})], as_org=PROVIDER)
    ra, rb = led.order([a.envelope, b.envelope])
    assert (ra.status, rb.status) == ("VALID", "MVCC_READ_CONFLICT")
    assert verify_ledger(led).ok
    led.close()
    _corrupt(path, "UPDATE txs SET status = 'VALID' WHERE tx_id = ?", (b.tx_id,))
    led = open_toy_ledger(path, signers)
    try:
        report = verify_ledger(led)
        assert {(p.check, p.tx_id) for p in report.problems} >= {("validation", b.tx_id)}
        assert any(p.check == "metadata" and p.block == rb.block for p in report.problems)
    finally:
        led.close()


def test_events_resume_from_a_block_and_wait_for_new_ones(tmp_path: Path) -> None:
    signers = make_signers()
    path = tmp_path / "ledger"
    led = open_toy_ledger(path, signers)
    commits = [led.submit("incr", [arg({"key": "e"})], as_org=PROVIDER) for _ in range(3)]
    led.submit("put", [arg({"key": "quiet", "value": "no event"})], as_org=PROVIDER)
    all_events = list(led.events(0, timeout=0.05))
    assert [e.tx_id for e in all_events] == [c.tx_id for c in commits]
    assert all(isinstance(e, ChaincodeEvent) and e.name == "Incremented" for e in all_events)
    assert [e.block for e in all_events] == [c.block for c in commits]
    resumed = list(led.events(commits[1].block, timeout=0.05))
    assert [e.tx_id for e in resumed] == [c.tx_id for c in commits[1:]]
    assert list(led.events(led.height(), timeout=0.05)) == []
    # a waiting consumer receives events committed after it started
    got: list[ChaincodeEvent] = []
    started = threading.Event()

    def consume() -> None:
        stream = led.events(led.height(), timeout=30)
        started.set()
        for event in stream:
            got.append(event)
            if len(got) == 2:
                return

    t = threading.Thread(target=consume)
    t.start()
    started.wait()
    later = [led.submit("incr", [arg({"key": "e"})], as_org=CUSTOMER) for _ in range(2)]
    t.join(30)
    assert not t.is_alive()
    assert [e.tx_id for e in got] == [c.tx_id for c in later]
    assert got[-1].payload == b'{"key": "e", "value": 5}'
    led.close()
    # and after a restart, from disk
    led = open_toy_ledger(path, signers)
    try:
        assert [e.tx_id for e in led.events(later[0].block, timeout=0.05)] == [c.tx_id for c in later]
    finally:
        led.close()


def test_close_ends_a_waiting_event_stream(tmp_path: Path) -> None:
    led = open_toy_ledger(tmp_path / "l", make_signers())
    out: list[object] = []
    t = threading.Thread(target=lambda: out.extend(led.events(0)))
    t.start()
    led.close()
    t.join(10)
    assert not t.is_alive() and out == []


_CLOSE_RACE = """
import sys, tempfile, threading
from pathlib import Path
from tests.helpers.embedded import PROVIDER, arg, make_signers, open_toy_ledger
signers = make_signers()
for _ in range(int(sys.argv[1])):
    led = open_toy_ledger(Path(tempfile.mkdtemp()) / "l", signers)
    led.submit("put", [arg({"key": "k", "value": "v", "event": "Put"})], as_org=PROVIDER)
    readers = [threading.Thread(target=lambda: list(led.events(0))) for _ in range(3)]
    for t in readers:
        t.start()
    led.close()
    for t in readers:
        t.join(10)
        assert not t.is_alive()
"""


def test_close_while_other_threads_read_does_not_crash(tmp_path: Path) -> None:
    # Closing a SQLite connection while another thread runs a statement on it is a segfault in CPython's
    # sqlite3 module; the race is narrow, so it runs many times, in a child process a crash cannot take down.
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CLOSE_RACE, "300"],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_open_ledger_factory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", ledger="embedded")
    signers = {PROVIDER: SoftwareSigner(), CUSTOMER: SoftwareSigner(), AUDITOR: SoftwareSigner()}
    led = open_ledger(settings, signers)
    try:
        assert isinstance(led, Ledger) and isinstance(led, EmbeddedLedger)
        assert (tmp_path / "data" / "ledger.sqlite").exists()
        assert led.genesis.chaincode_orgs == (PROVIDER, CUSTOMER)
    finally:
        led.close()


def test_one_open_ledger_per_directory(tmp_path: Path) -> None:
    from hub.ledger.base import LedgerUnavailable

    signers = make_signers()
    led = open_toy_ledger(tmp_path / "l", signers)
    try:
        with pytest.raises(LedgerUnavailable, match="open elsewhere"):
            open_toy_ledger(tmp_path / "l", signers)
        assert led.submit("put", [arg({"key": "a", "value": "1"})], as_org=PROVIDER).valid
    finally:
        led.close()
    open_toy_ledger(tmp_path / "l", signers).close()  # free again after close


def test_commit_timeout_is_status_unknown_then_resolved_by_tx(tmp_path: Path) -> None:
    from hub.ledger.base import CommitStatusUnknown

    # the block is cut only after 1 s, but the caller waits 10 ms: the outcome is unknown to it
    led = open_toy_ledger(tmp_path / "l", make_signers(), block_timeout=1.0, commit_timeout=0.01)
    try:
        with pytest.raises(CommitStatusUnknown) as info:
            led.submit("put", [arg({"key": "slow", "value": "1", "event": "Slow"})], as_org=PROVIDER)
        tx_id = info.value.tx_id
        events = led.events(0, timeout=30)
        assert next(events).tx_id == tx_id  # the committed event is how the caller learns it landed
        assert led.tx(tx_id).status == "VALID"
    finally:
        led.close()


def test_connections_of_finished_threads_are_released(tmp_path: Path) -> None:
    import gc

    led = open_toy_ledger(tmp_path / "l", make_signers())
    try:
        led.submit("put", [arg({"key": "a", "value": "1"})], as_org=PROVIDER)
        for _ in range(30):
            t = threading.Thread(
                target=led.evaluate, args=("get", [arg({"key": "a"})]), kwargs={"as_org": PROVIDER}
            )
            t.start()
            t.join()
        gc.collect()
        assert len(led.store._all) < 10  # main thread + committer (+ stragglers), not one per dead thread
    finally:
        led.close()


def test_failed_block_write_is_status_unknown_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.ledger.base import CommitStatusUnknown

    led = open_toy_ledger(tmp_path / "l", make_signers())
    try:
        led.submit("put", [arg({"key": "a", "value": "1"})], as_org=PROVIDER)
        height = led.height()
        real_write = led.store.write_block
        calls = []

        def failing_write(conn: sqlite3.Connection, bw: object) -> None:
            calls.append(bw)
            if len(calls) == 1:
                raise sqlite3.OperationalError("disk I/O error (injected)")
            real_write(conn, bw)  # type: ignore[arg-type]

        monkeypatch.setattr(led.store, "write_block", failing_write)
        with pytest.raises(CommitStatusUnknown, match="disk I/O error") as info:
            led.submit("put", [arg({"key": "a", "value": "2"})], as_org=PROVIDER)
        with pytest.raises(LedgerNotFound):
            led.tx(info.value.tx_id)  # resolved: it never landed, so a re-submit is safe
        assert led.height() == height
        again = led.submit("put", [arg({"key": "a", "value": "2"})], as_org=PROVIDER)
        assert again.block == height
        assert led.evaluate("get", [arg({"key": "a"})], as_org=PROVIDER) == b"2"
        assert verify_ledger(led).ok
    finally:
        led.close()


def test_nested_snapshot_keeps_the_outer_view(tmp_path: Path) -> None:
    led = open_toy_ledger(tmp_path / "l", make_signers())
    try:
        led.submit("put", [arg({"key": "a", "value": "1"})], as_org=PROVIDER)
        with led.snapshot() as outer:
            t = threading.Thread(
                target=led.submit,
                args=("put", [arg({"key": "a", "value": "2"})]),
                kwargs={"as_org": PROVIDER},
            )
            t.start()
            t.join()
            # the outer snapshot still sees 1, and so does an evaluate nested inside it on this thread
            assert outer.get("a").value == b"1"  # type: ignore[union-attr]
            assert led.evaluate("get", [arg({"key": "a"})], as_org=PROVIDER) == b"1"
            assert outer.get("a").value == b"1"  # type: ignore[union-attr]
        assert led.evaluate("get", [arg({"key": "a"})], as_org=PROVIDER) == b"2"
    finally:
        led.close()


def test_storage_failure_during_simulation_is_unavailable_not_a_chaincode_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.ledger.base import LedgerUnavailable
    from hub.ledger.embedded.store import StateReader

    led = open_toy_ledger(tmp_path / "l", make_signers())
    try:

        def broken(self: StateReader, key: str) -> None:
            raise sqlite3.OperationalError("disk I/O error (injected)")

        monkeypatch.setattr(StateReader, "get", broken)
        height = led.height()
        for call in (led.evaluate, led.submit):
            with pytest.raises(LedgerUnavailable, match="disk I/O") as info:
                call("get", [arg({"key": "a"})], as_org=PROVIDER)
            assert info.value.retryable
        assert led.height() == height
        monkeypatch.undo()
        assert led.submit("incr", [arg({"key": "a"})], as_org=PROVIDER).payload == b"1"
    finally:
        led.close()
