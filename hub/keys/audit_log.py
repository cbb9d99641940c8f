"""The key audit log: every use of a managed key, append-only and hash-chained (see ADR 0014).

One JSON line per use: `seq, ts, key, version, key_id, op, digest, pid, prev, hash` where `digest` is the
SHA-256 that was signed and `hash = SHA-256(canonical JSON of the entry without "hash")`; `prev` is the
previous entry's hash (64 zeros for the first).

Throughput: signing runs at thousands per second, so `record()` only appends to an in-memory buffer; a
background thread (or `flush()`) writes the buffer as one batch with one fsync. The chain is computed at
flush time under an exclusive file lock, from the last line on disk, so several processes (the server,
the CLI, forked workers) can share one log and the file order is the chain order.

Crash semantics ("broken" defined): after each batch is fsynced, a `head` file records the last durable
(seq, hash). A crash can lose the unflushed buffer (at most one flush interval) and can leave a torn,
newline-less last line; neither breaks the chain: the torn tail is cut off at the next open. The log is
*broken* (tampered) if any complete line fails to parse, has a wrong hash, a seq gap, a prev that does
not match its predecessor, or if the file ends before the seq the head file vouches for.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_OPEN_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """A normal interpreter exit loses nothing still buffered (a crash loses at most one interval)."""
    for log in list(_OPEN_LOGS):
        if not log._closed and log._pid == os.getpid():
            with contextlib.suppress(Exception):
                log.flush()


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _last_complete_line(f: Any) -> tuple[bytes | None, int]:
    """(last newline-terminated line, offset just after it); cuts nothing."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if end == 0:
        return None, 0
    pos = end
    chunk = 4096
    data = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        last_nl = data.rfind(b"\n")
        if last_nl == -1:
            continue
        prev_nl = data.rfind(b"\n", 0, last_nl)
        if prev_nl != -1 or pos == 0:
            return data[prev_nl + 1 : last_nl], pos + last_nl + 1
    return None, 0


class AuditLog:
    """Buffered writer. `record()` is cheap; `flush()` makes everything recorded so far durable."""

    def __init__(self, path: Path, *, flush_interval: float = 0.05, max_buffer: int = 2000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._buf: list[dict[str, Any]] = []
        self._buf_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()  # set when the buffer goes from empty to non-empty
        self._full = threading.Event()  # set when the buffer reaches max_buffer
        self._closed = False
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self.flushes = 0
        _OPEN_LOGS.add(self)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            # forked child: the parent's pending entries are the parent's to write
            self._pid = os.getpid()
            self._buf = []
            self._buf_lock = threading.Lock()
            self._flush_lock = threading.Lock()
            self._wake = threading.Event()
            self._full = threading.Event()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="key-audit-writer", daemon=True)
            self._thread.start()

    def record(self, *, key: str, version: int, key_id: str, op: str, digest: bytes) -> None:
        if self._closed:
            raise RuntimeError("audit log closed")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        entry = {
            "ts": now, "key": key, "version": version, "key_id": key_id, "op": op,
            "digest": digest.hex(), "pid": os.getpid(),
        }
        if self._pid != os.getpid() or self._thread is None:
            self._ensure_thread()
        with self._buf_lock:
            self._buf.append(entry)
            size = len(self._buf)
        if size == 1:
            self._wake.set()
        if size >= self.max_buffer:
            self._full.set()

    def _run(self) -> None:
        """Idle threads sleep until something is recorded (no polling), then batch for one interval."""
        while not self._closed:
            self._wake.wait()
            if self._closed:
                break
            self._full.wait(self.flush_interval)
            self._wake.clear()
            self._full.clear()
            try:
                self.flush()
            except Exception:  # a failed flush keeps the entries; retry after an interval
                self._wake.set()
                self._full.wait(self.flush_interval)

    def flush(self) -> int:
        """Write every entry recorded so far as one fsynced batch. Returns how many were written."""
        with self._flush_lock:
            with self._buf_lock:
                pending, self._buf = self._buf, []
            if not pending:
                return 0
            try:
                self._write_batch(pending)
            except BaseException:
                with self._buf_lock:
                    self._buf = pending + self._buf
                raise
            self.flushes += 1
            return len(pending)

    def _write_batch(self, pending: list[dict[str, Any]]) -> None:
        with _file_lock(self.lock_path):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            with os.fdopen(fd, "r+b") as f:
                last, good_end = _last_complete_line(f)
                f.seek(0, os.SEEK_END)
                if f.tell() != good_end:
                    f.truncate(good_end)  # a torn tail from a crash mid-write: never part of the chain
                if last is None:
                    seq, prev = 0, GENESIS
                else:
                    tail = json.loads(last)
                    seq, prev = int(tail["seq"]), str(tail["hash"])
                lines = []
                for entry in pending:
                    seq += 1
                    entry["seq"] = seq
                    entry["prev"] = prev
                    entry["hash"] = prev = entry_hash(entry)
                    lines.append(_canonical(entry) + b"\n")
                f.seek(good_end)
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
            tmp = self.head_path.with_suffix(".tmp")
            with open(tmp, "wb") as h:
                h.write(json.dumps({"seq": seq, "hash": prev}).encode())
                h.flush()
                os.fsync(h.fileno())
            os.replace(tmp, self.head_path)

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()
        self._full.set()
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            self._thread.join(timeout=5)


@dataclass
class LogCheck:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    first_bad_line: int | None = None  # 1-based line number of the first problem
    torn_tail: bool = False

    def __bool__(self) -> bool:
        return self.ok


def verify_log(path: Path) -> LogCheck:
    """Re-check the whole chain; report the first place it breaks and why."""
    path = Path(path)
    head_path = path.with_name(path.name + ".head")
    check = LogCheck(ok=True, entries=0)

    def bad(line_no: int, why: str) -> None:
        check.ok = False
        check.problems.append(f"line {line_no}: {why}")
        if check.first_bad_line is None:
            check.first_bad_line = line_no

    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # no trailing newline: a torn write, not part of the chain
        check.torn_tail = True
    prev, seq = GENESIS, 0
    hashes: dict[int, str] = {}
    for i, raw in enumerate(lines, start=1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            bad(i, "not a JSON entry")
            continue
        check.entries += 1
        if entry.get("hash") != entry_hash(entry):
            bad(i, f"seq {entry.get('seq')}: content does not match its hash (entry changed)")
        if entry.get("seq") != seq + 1:
            bad(i, f"seq {entry.get('seq')} follows seq {seq} (entry deleted, inserted or reordered)")
        if entry.get("prev") != prev:
            bad(i, f"seq {entry.get('seq')}: prev does not match the hash of the line before")
        prev = str(entry.get("hash"))
        seq = entry["seq"] if isinstance(entry.get("seq"), int) else seq + 1
        hashes[seq] = prev
    if head_path.exists():
        head = json.loads(head_path.read_text())
        if int(head["seq"]) > seq:
            bad(len(lines) + 1, f"log ends at seq {seq} but seq {head['seq']} was written (tail deleted)")
        elif head["seq"] and hashes.get(int(head["seq"])) != head["hash"]:
            why = f"entry seq {head['seq']} does not match the recorded head hash (rewritten)"
            bad(int(head["seq"]), why)
    return check


def read_log(path: Path) -> list[dict[str, Any]]:
    """All complete entries (no verification)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line]
