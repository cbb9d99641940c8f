"""The key audit log: hash chain, tamper detection (change, delete, reorder, truncate), crash safety."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hub.keys.audit_log import AuditLog, read_log, verify_log

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _fill(path: Path, n: int = 20) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.record(key="endorser-ProviderMSP", version=1 + i % 2, key_id="ab" * 32, op="embedded-endorsement",
                   digest=hashlib.sha256(str(i).encode()).digest())
    log.flush()
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_chain_verifies_and_has_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    check = verify_log(path)
    assert check.ok and check.entries == 20 and not check.problems
    entries = read_log(path)
    assert [e["seq"] for e in entries] == list(range(1, 21))
    first = entries[0]
    assert set(first) >= {"ts", "key", "version", "key_id", "op", "digest", "prev", "hash", "seq"}
    assert first["prev"] == "0" * 64
    assert first["digest"] == hashlib.sha256(b"0").hexdigest()
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_one_changed_byte_is_found_and_located(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    lines = _lines(path)
    assert b'"version":1' in lines[6]
    lines[6] = lines[6].replace(b'"version":1', b'"version":7')  # one byte
    path.write_bytes(b"".join(lines))
    check = verify_log(path)
    assert not check.ok and check.first_bad_line == 7
    assert "content does not match its hash" in check.problems[0]


def test_a_recomputed_entry_hash_still_breaks_the_link_to_the_next(tmp_path: Path) -> None:
    from hub.keys.audit_log import _canonical, entry_hash

    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    lines = _lines(path)
    entry = json.loads(lines[3])
    entry["op"] = "invoice-document"
    entry["hash"] = entry_hash(entry)
    lines[3] = _canonical(entry) + b"\n"
    path.write_bytes(b"".join(lines))
    check = verify_log(path)
    assert not check.ok and check.first_bad_line == 5
    assert "prev does not match" in check.problems[0]


def test_deleted_entry_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    lines = _lines(path)
    del lines[10]
    path.write_bytes(b"".join(lines))
    check = verify_log(path)
    assert not check.ok and check.first_bad_line == 11
    assert "follows seq 10" in check.problems[0]


def test_reordered_entries_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    lines = _lines(path)
    lines[4], lines[5] = lines[5], lines[4]
    path.write_bytes(b"".join(lines))
    check = verify_log(path)
    assert not check.ok and check.first_bad_line == 5


def test_deleted_tail_is_found_through_the_head_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    path.write_bytes(b"".join(_lines(path)[:15]))
    check = verify_log(path)
    assert not check.ok
    assert "tail deleted" in check.problems[0]


def test_torn_last_line_is_not_a_break_and_is_repaired_on_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path).close()
    with open(path, "ab") as f:
        f.write(b'{"seq":21,"ts":"2026-')  # a crash in the middle of a write
    check = verify_log(path)
    assert check.ok and check.torn_tail and check.entries == 20
    log = _fill(path, 3)
    log.close()
    check = verify_log(path)
    assert check.ok and not check.torn_tail and check.entries == 23


def test_background_writer_flushes_without_explicit_flush(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, flush_interval=0.01, max_buffer=5)
    for _ in range(50):
        log.record(key="k", version=1, key_id="00" * 32, op="t", digest=bytes(32))
    # no flush(): the writer thread gets there on its own (a generous liveness bound, not a speed check)
    for _ in range(3000):
        if path.exists() and verify_log(path).entries == 50:
            break
        threading.Event().wait(0.01)
    assert verify_log(path).entries == 50
    assert log.flushes < 50  # batched: not one fsync per entry
    log.close()


def test_threads_and_two_processes_share_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = (
        "import sys; from pathlib import Path; from hub.keys.audit_log import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]), flush_interval=0.001)\n"
        "for i in range(500):\n"
        "    log.record(key='other-process', version=1, key_id='11'*32, op='t', digest=bytes(32))\n"
        "log.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT)
    log = AuditLog(path, flush_interval=0.001)

    def work() -> None:
        for _ in range(250):
            log.record(key="this-process", version=1, key_id="22" * 32, op="t", digest=bytes(32))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert proc.wait(timeout=120) == 0
    check = verify_log(path)
    assert check.ok, check.problems
    assert check.entries == 1500


def test_kill_9_mid_stream_leaves_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = (
        "import sys; from pathlib import Path; from hub.keys.audit_log import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]), flush_interval=0.001, max_buffer=50)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    log.record(key='k', version=1, key_id='33'*32, op='t', digest=i.to_bytes(32, 'big'))\n"
        "    if i == 2000:\n"
        "        log.flush()\n"
        "        print('flowing', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"flowing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    check = verify_log(path)
    assert check.ok, check.problems
    assert check.entries >= 2000
    # a new writer continues the same chain
    log = AuditLog(path)
    log.record(key="k", version=1, key_id="33" * 32, op="after-crash", digest=bytes(32))
    log.close()
    after = verify_log(path)
    assert after.ok and after.entries == check.entries + 1


def test_forked_child_writes_its_own_entries_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, flush_interval=10)
    log.record(key="parent", version=1, key_id="44" * 32, op="t", digest=bytes(32))
    pid = os.fork()
    if pid == 0:
        try:
            log.record(key="child", version=1, key_id="55" * 32, op="t", digest=bytes(32))
            log.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    log.close()
    entries = read_log(path)
    assert sorted(e["key"] for e in entries) == ["child", "parent"]
    assert verify_log(path).ok


def test_normal_exit_without_close_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = (
        "import sys; from pathlib import Path; from hub.keys.audit_log import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]), flush_interval=3600)\n"
        "for i in range(10):\n"
        "    log.record(key='k', version=1, key_id='66'*32, op='t', digest=bytes(32))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, check=True, timeout=120)
    check = verify_log(path)
    assert check.ok and check.entries == 10
