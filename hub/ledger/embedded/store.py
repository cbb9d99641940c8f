"""SQLite storage of the embedded ledger: blocks, transactions, world state, history index, events.

One file (`ledger.sqlite`) in WAL mode: readers (simulations, queries, the event stream) never block the
single committer, and each block is written in one SQLite transaction, so a crash leaves whole blocks
and one fsync serves a whole block of transactions. Keys are BLOBs of their UTF-8 encoding (composite keys
contain U+0000, and memcmp order on UTF-8 is code-point order, which range queries need). The history
index holds only (key, block, tx index), like Fabric's history database; values come from the stored
transaction when asked for.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaincode.stub import KeyModification

from .codec import canonical, key_bytes, loads
from .rwset import Entry
from .transaction import ParsedTx

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
  number INTEGER PRIMARY KEY, header BLOB NOT NULL, hash BLOB NOT NULL,
  metadata BLOB NOT NULL, config BLOB);
CREATE TABLE IF NOT EXISTS txs (
  block INTEGER NOT NULL, idx INTEGER NOT NULL, tx_id TEXT NOT NULL, status TEXT NOT NULL,
  envelope BLOB NOT NULL, PRIMARY KEY (block, idx));
CREATE INDEX IF NOT EXISTS txs_by_id ON txs (tx_id);
CREATE TABLE IF NOT EXISTS state (
  key BLOB PRIMARY KEY, value BLOB NOT NULL, block INTEGER NOT NULL, idx INTEGER NOT NULL,
  policy TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
  key BLOB NOT NULL, block INTEGER NOT NULL, idx INTEGER NOT NULL,
  PRIMARY KEY (key, block, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  block INTEGER NOT NULL, idx INTEGER NOT NULL, tx_id TEXT NOT NULL, name TEXT NOT NULL,
  payload BLOB NOT NULL, PRIMARY KEY (block, idx));
CREATE TABLE IF NOT EXISTS identities (
  msp_id TEXT NOT NULL, key_id TEXT NOT NULL, cert BLOB NOT NULL, PRIMARY KEY (msp_id, key_id));
"""

_CHUNK = 500  # bound on SQL parameters per statement


def _policy_text(policy: Sequence[str] | None) -> str | None:
    return None if policy is None else canonical(list(policy)).decode()


def _entry(value: bytes, block: int, idx: int, policy: str | None) -> Entry:
    return Entry(bytes(value), (block, idx), None if policy is None else tuple(loads(policy.encode())))


class StateReader:
    """Reads committed state through one connection (inside a read transaction: one consistent snapshot)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, key: str) -> Entry | None:
        row = self.conn.execute(
            "SELECT value, block, idx, policy FROM state WHERE key = ?", (key_bytes(key),)
        ).fetchone()
        return None if row is None else _entry(*row)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        found: dict[bytes, Entry] = {}
        encoded = [key_bytes(k) for k in keys]
        for i in range(0, len(encoded), _CHUNK):
            chunk = encoded[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value, block, idx, policy FROM state WHERE key IN ({marks})"  # noqa: S608
            for k, value, block, idx, policy in self.conn.execute(sql, chunk):
                found[bytes(k)] = _entry(value, block, idx, policy)
        return [found.get(k) for k in encoded]

    def range(self, start: str, end: str) -> Iterator[tuple[str, Entry]]:
        """Committed keys in [start, end); an empty `end` means no upper bound (as in Fabric)."""
        if end:
            cur = self.conn.execute(
                "SELECT key, value, block, idx, policy FROM state WHERE key >= ? AND key < ? ORDER BY key",
                (key_bytes(start), key_bytes(end)),
            )
        else:
            cur = self.conn.execute(
                "SELECT key, value, block, idx, policy FROM state WHERE key >= ? ORDER BY key",
                (key_bytes(start),),
            )
        while rows := cur.fetchmany(256):
            for k, value, block, idx, policy in rows:
                yield bytes(k).decode("utf-8"), _entry(value, block, idx, policy)

    def history(self, key: str) -> Iterator[KeyModification]:
        """Committed modifications of `key`, newest first, values taken from the stored transactions."""
        rows = self.conn.execute(
            "SELECT t.envelope FROM history h JOIN txs t ON t.block = h.block AND t.idx = h.idx "
            "WHERE h.key = ? ORDER BY h.block DESC, h.idx DESC",
            (key_bytes(key),),
        ).fetchall()
        for (envelope,) in rows:
            tx = ParsedTx.parse(bytes(envelope))
            value = tx.response.rwset.writes.get(key)
            yield KeyModification(tx.proposal.tx_id, value or b"", tx.proposal.datetime(), value is None)


@dataclass
class BlockWrite:
    """Everything one block changes, written in one SQLite transaction."""

    number: int
    header: bytes
    hash: bytes
    metadata: bytes
    config: bytes | None = None
    txs: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # idx, tx_id, status, envelope
    puts: dict[str, tuple[bytes, int, int, tuple[str, ...] | None]] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    history: list[tuple[str, int, int]] = field(default_factory=list)
    events: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # idx, tx_id, name, payload


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when a thread ends, its connection is freed (and
    closed) with the thread's locals, instead of being kept open until the ledger closes. `owner` is the
    one thread that uses it: only that thread, or anyone once it has ended, may close it."""

    owner: threading.Thread


class Store:
    """Owns the database file; hands out one connection per thread (SQLite connections are not shared)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        conn = self.connect()
        conn.executescript(SCHEMA)

    def connect(self, owner: threading.Thread | None = None) -> sqlite3.Connection:
        """A new connection for `owner` (default: the calling thread), the only thread that may use it."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30, factory=_Connection
        )
        assert isinstance(conn, _Connection)
        conn.owner = owner or threading.current_thread()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        with self._lock:
            self._all.add(conn)
        return conn

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if self._closed:
            if conn is not None:  # left open by close() because this thread might have been using it
                self._local.conn = None
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            raise sqlite3.ProgrammingError("store closed")
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Closes the connections no other live thread can be using at this moment. Closing a connection
        while another thread runs a statement on it crashes the interpreter (CPython's sqlite3 does not
        guard that), so a live thread's connection is left to it: its next `conn()` closes it and raises,
        and it is freed at the latest when the thread ends."""
        self._closed = True
        me = threading.current_thread()
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            owner = getattr(conn, "owner", me)
            if owner is me or not owner.is_alive():
                with self._lock:
                    self._all.discard(conn)
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    # --- meta and identities -------------------------------------------------------------------
    def get_meta(self, name: str) -> bytes | None:
        row = self.conn().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, name: str, value: bytes) -> None:
        self.conn().execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def identity_cert(self, msp_id: str, key_id: str) -> bytes | None:
        row = (
            self.conn()
            .execute("SELECT cert FROM identities WHERE msp_id = ? AND key_id = ?", (msp_id, key_id))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def save_identity(self, msp_id: str, key_id: str, cert: bytes) -> None:
        self.conn().execute(
            "INSERT OR REPLACE INTO identities (msp_id, key_id, cert) VALUES (?, ?, ?)",
            (msp_id, key_id, cert),
        )

    # --- blocks ---------------------------------------------------------------------------------
    def height(self) -> int:
        row = self.conn().execute("SELECT MAX(number) FROM blocks").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def block_row(self, number: int) -> tuple[bytes, bytes, bytes, bytes | None] | None:
        row = (
            self.conn()
            .execute("SELECT header, hash, metadata, config FROM blocks WHERE number = ?", (number,))
            .fetchone()
        )
        if row is None:
            return None
        return bytes(row[0]), bytes(row[1]), bytes(row[2]), None if row[3] is None else bytes(row[3])

    def block_txs(self, number: int) -> list[tuple[int, str, str, bytes]]:
        rows = (
            self.conn()
            .execute("SELECT idx, tx_id, status, envelope FROM txs WHERE block = ? ORDER BY idx", (number,))
            .fetchall()
        )
        return [(int(i), str(t), str(s), bytes(e)) for i, t, s, e in rows]

    def find_tx(self, tx_id: str) -> tuple[int, int, str, bytes] | None:
        """The VALID occurrence of a tx id if any, else its first occurrence."""
        row = (
            self.conn()
            .execute(
                "SELECT block, idx, status, envelope FROM txs WHERE tx_id = ? "
                "ORDER BY status != 'VALID', block, idx LIMIT 1",
                (tx_id,),
            )
            .fetchone()
        )
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]), bytes(row[3]))

    def tx_seen(self, conn: sqlite3.Connection, tx_id: str) -> bool:
        """Whether a VALID transaction with this id is committed. Invalid ones do not count, so a forged
        copy of a proposal ordered first cannot block the genuine transaction."""
        row = conn.execute(
            "SELECT 1 FROM txs WHERE tx_id = ? AND status = 'VALID' LIMIT 1", (tx_id,)
        ).fetchone()
        return row is not None

    def events_after(self, block: int, idx: int, limit: int = 500) -> list[tuple[int, int, str, str, bytes]]:
        rows = (
            self.conn()
            .execute(
                "SELECT block, idx, tx_id, name, payload FROM events WHERE (block, idx) > (?, ?) "
                "ORDER BY block, idx LIMIT ?",
                (block, idx, limit),
            )
            .fetchall()
        )
        return [(int(b), int(i), str(t), str(n), bytes(p)) for b, i, t, n, p in rows]

    def all_state(self, conn: sqlite3.Connection | None = None) -> Iterator[tuple[str, Entry]]:
        return StateReader(conn or self.conn()).range("", "")

    def write_block(self, conn: sqlite3.Connection, bw: BlockWrite) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO blocks (number, header, hash, metadata, config) VALUES (?, ?, ?, ?, ?)",
                (bw.number, bw.header, bw.hash, bw.metadata, bw.config),
            )
            conn.executemany(
                "INSERT INTO txs (block, idx, tx_id, status, envelope) VALUES (?, ?, ?, ?, ?)",
                [(bw.number, i, t, s, e) for i, t, s, e in bw.txs],
            )
            if bw.deletes:
                conn.executemany("DELETE FROM state WHERE key = ?", [(key_bytes(k),) for k in bw.deletes])
            conn.executemany(
                "INSERT OR REPLACE INTO state (key, value, block, idx, policy) VALUES (?, ?, ?, ?, ?)",
                # in key order: B-tree inserts stay local, which matters for blocks of 10^4+ keys
                sorted((key_bytes(k), v, b, i, _policy_text(p)) for k, (v, b, i, p) in bw.puts.items()),
            )
            conn.executemany(
                "INSERT INTO history (key, block, idx) VALUES (?, ?, ?)",
                sorted((key_bytes(k), b, i) for k, b, i in bw.history),
            )
            conn.executemany(
                "INSERT INTO events (block, idx, tx_id, name, payload) VALUES (?, ?, ?, ?, ?)",
                [(bw.number, i, t, n, p) for i, t, n, p in bw.events],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
