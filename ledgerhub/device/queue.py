"""The device's local queue: readings and the messages they are sent in, in one SQLite file.

A reading is stored (`add`) before anything is sent; a message is formed — a fresh message id and the
readings it carries, in one SQLite transaction — before its first send, and it is re-sent unchanged
(same id, same readings) until the hub gives a final answer. So a device killed at any instant resends
what it had formed with the id it had given it; the hub answers a replayed message id with its first
answer and records nothing twice. The answer is applied to every reading of the message in one
transaction. States of a reading: `queued` -> `sending` -> `delivered` | `duplicate` | `refused`
(or back to `queued` when its message was refused for another reading's fault).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL = ("delivered", "duplicate", "refused")
SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    message_id TEXT,
    code TEXT,
    detail TEXT,
    tx_id TEXT,
    block INTEGER,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_state ON readings (state, seq);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    attempts INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    created_at REAL NOT NULL
);
"""


class ReadingConflict(ValueError):
    """The reading id is already queued with other content (a device numbers each reading once)."""


@dataclass(frozen=True)
class QueuedReading:
    id: str
    reading: dict[str, Any]
    state: str
    message_id: str | None
    code: str | None
    detail: str | None
    tx_id: str | None
    block: int | None


@dataclass(frozen=True)
class Outcome:
    """What the hub said about one reading of a message."""

    state: str  # delivered | duplicate | refused | queued (send again in another message)
    code: str | None = None
    detail: str | None = None
    tx_id: str | None = None
    block: int | None = None


def _canonical(reading: dict[str, Any]) -> str:
    return json.dumps(reading, sort_keys=True, separators=(",", ":"))


class ReadingQueue:
    """Thread-safe; one connection, WAL, `synchronous=FULL` (a committed add survives power loss)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- adding ---------------------------------------------------------------------------------

    def add(self, readings: Iterable[dict[str, Any]]) -> int:
        """Store readings (all or none); returns how many were new. The same reading again is a no-op;
        the same id with other content raises `ReadingConflict` and stores nothing."""
        now = time.time()
        added = 0
        with self._tx() as conn:
            for reading in readings:
                body = _canonical(reading)
                row = conn.execute("SELECT body FROM readings WHERE id = ?", (reading["id"],)).fetchone()
                if row is not None:
                    if row[0] != body:
                        raise ReadingConflict(
                            f"reading {reading['id']!r} is already queued with other content")
                    continue
                conn.execute("INSERT INTO readings (id, body, updated_at) VALUES (?, ?, ?)",
                             (reading["id"], body, now))
                added += 1
        return added

    # --- messages -------------------------------------------------------------------------------

    def open_message(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest message formed but not answered (resent as it is after a restart)."""
        with self._lock:
            row = self._conn.execute("SELECT id, body FROM messages WHERE state = 'open' "
                                     "ORDER BY created_at, id LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def form_message(self, device_id: str, limit: int) -> tuple[str, dict[str, Any]] | None:
        """Take up to `limit` queued readings (oldest first) into a new message with a new id."""
        with self._tx() as conn:
            rows = conn.execute("SELECT id, body FROM readings WHERE state = 'queued' ORDER BY seq LIMIT ?",
                                (limit,)).fetchall()
            if not rows:
                return None
            message_id = str(uuid.uuid4())
            body = {"device_id": device_id, "message_id": message_id,
                    "readings": [json.loads(b) for _, b in rows]}
            conn.execute("INSERT INTO messages (id, body, created_at) VALUES (?, ?, ?)",
                         (message_id, json.dumps(body), time.time()))
            conn.executemany("UPDATE readings SET state = 'sending', message_id = ?, updated_at = ? "
                             "WHERE id = ?",
                             [(message_id, time.time(), rid) for rid, _ in rows])
        return message_id, body

    def attempted(self, message_id: str) -> int:
        with self._tx() as conn:
            conn.execute("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (message_id,))
            row = conn.execute("SELECT attempts FROM messages WHERE id = ?", (message_id,)).fetchone()
            return int(row[0])

    def settle(self, message_id: str, answer: dict[str, Any], outcomes: dict[str, Outcome]) -> None:
        """The hub's final answer to a message, applied to each of its readings at once."""
        now = time.time()
        with self._tx() as conn:
            for reading_id, o in outcomes.items():
                if o.state == "queued":
                    conn.execute("UPDATE readings SET state = 'queued', message_id = NULL, updated_at = ? "
                                 "WHERE id = ? AND message_id = ?", (now, reading_id, message_id))
                else:
                    conn.execute("UPDATE readings SET state = ?, code = ?, detail = ?, tx_id = ?, block = ?, "
                                 "updated_at = ? WHERE id = ? AND message_id = ?",
                                 (o.state, o.code, o.detail, o.tx_id, o.block, now, reading_id, message_id))
            conn.execute("UPDATE messages SET state = 'answered', answer = ? WHERE id = ?",
                         (json.dumps(answer), message_id))

    # --- reading the state ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM readings GROUP BY state").fetchall()
        out = {state: 0 for state in ("queued", "sending", *FINAL)}
        out.update({state: int(n) for state, n in rows})
        return out

    def readings(self, state: str | None = None) -> list[QueuedReading]:
        sql = "SELECT id, body, state, message_id, code, detail, tx_id, block FROM readings"
        params: tuple[Any, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            params = (state,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [QueuedReading(r[0], json.loads(r[1]), *r[2:]) for r in rows]

    def reading(self, reading_id: str) -> QueuedReading | None:
        with self._lock:
            r = self._conn.execute("SELECT id, body, state, message_id, code, detail, tx_id, block "
                                   "FROM readings WHERE id = ?", (reading_id,)).fetchone()
        return None if r is None else QueuedReading(r[0], json.loads(r[1]), *r[2:])

    def messages(self) -> list[dict[str, Any]]:
        """Every message formed, with its state and the hub's answer (for diagnostics)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, body, state, attempts, answer FROM messages ORDER BY created_at, id").fetchall()
        return [{"id": r[0], "body": json.loads(r[1]), "state": r[2], "attempts": r[3],
                 "answer": json.loads(r[4]) if r[4] else None} for r in rows]
