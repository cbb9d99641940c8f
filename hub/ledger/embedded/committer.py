"""The orderer and committing peer in one thread: cuts blocks from queued envelopes, validates, commits.

A block is cut when `max_txs` envelopes are queued or `timeout` seconds after the first one arrived,
whichever is first; while a block is being committed new envelopes queue up, so under load many
concurrent submits share one block and one SQLite transaction. A group of envelopes enqueued together
always lands in the same block (tests use it to force conflicts into one block).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from .blocks import data_hash as compute_data_hash
from .blocks import encode_header, encode_metadata
from .codec import sha256
from .store import BlockWrite, StateReader, Store
from .validator import BlockValidator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TxResult:
    tx_id: str
    block: int
    status: str
    reason: str


class CommitterClosed(RuntimeError):
    pass


class Committer:
    def __init__(
        self,
        store: Store,
        validator: BlockValidator,
        *,
        height: int,
        last_hash: bytes,
        max_txs: int,
        timeout: float,
        on_commit: Callable[[int], None],
    ) -> None:
        self._store = store
        self._validator = validator
        self._max_txs = max(1, max_txs)
        self._timeout = max(0.0, timeout)
        self._on_commit = on_commit
        self.height = height
        self.last_hash = last_hash
        self._queue: deque[tuple[list[bytes], list[Future[TxResult]]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="embedded-ledger-committer", daemon=True)
        self._conn = store.connect(owner=self._thread)
        self._thread.start()

    def enqueue(self, envelopes: Sequence[bytes]) -> list[Future[TxResult]]:
        futures: list[Future[TxResult]] = [Future() for _ in envelopes]
        with self._cond:
            if self._closing:
                raise CommitterClosed("ledger is closed")
            self._queue.append((list(envelopes), futures))
            self._cond.notify_all()
        return futures

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _next_batch(self) -> list[tuple[list[bytes], list[Future[TxResult]]]] | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            batch = [self._queue.popleft()]
            count = len(batch[0][0])
            deadline = time.monotonic() + self._timeout
            while count < self._max_txs:
                if self._queue:
                    if count + len(self._queue[0][0]) > self._max_txs:
                        break
                    group = self._queue.popleft()
                    batch.append(group)
                    count += len(group[0])
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            envelopes = [e for group in batch for e in group[0]]
            futures = [f for group in batch for f in group[1]]
            try:
                number, outcomes = self._commit(envelopes)
            except Exception as exc:
                log.exception("committing block %d failed", self.height)
                for f in futures:
                    f.set_exception(exc)
                continue
            for f, out in zip(futures, outcomes, strict=True):
                f.set_result(TxResult(out.tx_id, number, out.status, out.reason))
            try:
                self._on_commit(number)
            except Exception:
                log.exception("commit listener failed")
        self._conn.close()

    def _commit(self, envelopes: list[bytes]) -> tuple[int, list]:
        number = self.height
        dh = compute_data_hash(envelopes)
        header = encode_header(number, self.last_hash, dh)
        bw = BlockWrite(number=number, header=header, hash=sha256(header), metadata=b"")
        outcomes = self._validator.validate_block(
            number, envelopes, StateReader(self._conn), lambda t: self._store.tx_seen(self._conn, t), bw
        )
        bw.metadata = encode_metadata([o.status for o in outcomes])
        self._store.write_block(self._conn, bw)
        self.height = number + 1
        self.last_hash = bw.hash
        return number, outcomes
