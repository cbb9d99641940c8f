"""Several usage transactions in flight at once, without changing any message's verdict (ADR 0039).

The batcher of ADR 0006 drained the queue, submitted, and waited for the commit before draining again. On
Fabric a commit costs the orderer's block-cutting wait plus validation on the peers (≈ 0.3–0.5 s on the dev
network) while the machine is nearly idle, so one transaction at a time capped ingestion at a few thousand
readings/s. Here the worker hands each drained batch to one of `depth` slots and drains again as soon as a
slot is free: endorsement, submission and the commit-status wait of several batches overlap.

What must not change is which message wins a reading. Two messages that name the same reading (same
device, same reading id) are judged in arrival order: the first records it, the later one is told
`duplicates`. Two transactions in flight at once commit in the ordering service's order, not necessarily
the hub's, so a message that shares a reading with a message still in flight, or with an earlier message
held back for that reason, is **held back** (in arrival order) until that transaction is answered.
Messages with disjoint readings commute: the contract's effects of one never depend on the other (their
reading and message keys differ; the usage batch key is per transaction), so their relative commit order
changes nothing. A device that waits for each answer before sending the next message, as API.md asks for
ordered delivery, is never affected. With `depth` 1 this is exactly the one-at-a-time batcher.

A batch is capped by its readings and by its messages' signed bytes too, not only by its message count
(ADR 0069): Fabric's orderer refuses a transaction over the channel's `AbsoluteMaxBytes` (10 MB) outright,
and 500 messages of up to 1,000 readings would be far over it. A message alone always goes.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger("ledgerhub.ingest")

# Defaults per ledger (LEDGERHUB_INGEST_PIPELINE_DEPTH overrides; docs/performance.md has the runs): on
# Fabric a commit is mostly waiting (block cutting, validation on the peers), so batches overlap; the
# embedded ledger commits in-process under the hub's GIL, where one batch at a time keeps batches large.
PIPELINE_DEPTH_DEFAULT = {"fabric": 2, "embedded": 1}
WAKE = object()  # put on the queue when a batch is answered: held messages may go now


class Queued(Protocol):
    key: tuple[str, str]  # (device_id, message_id)
    raw: dict[str, Any]


def signed_size(item: Any) -> int:
    """The bytes the device signed (what the transaction carries about three times: as the proposal's
    input, as the stored signed message and inside the readings' values); 0 when not known."""
    return int(getattr(item, "size", 0) or 0)


def reading_keys(item: Queued) -> list[tuple[str, Any]]:
    """(device, reading id) of every reading of a message: what two messages must not both claim in flight."""
    device = item.key[0]
    return [(device, r.get("id")) for r in item.raw.get("readings", ()) if isinstance(r, dict)]


class Pipeline:
    """The ingestion worker loop: drain, hold back what must wait, run the batch in a free slot."""

    def __init__(
        self,
        source: queue.Queue[Any],
        run_batch: Callable[[list[Any]], None],
        *,
        depth: int,
        max_batch: int,
        max_readings: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.source = source
        self.run_batch = run_batch
        self.depth = max(1, depth)
        self.max_batch = max(1, max_batch)
        self.max_readings = max_readings  # readings per batch (None: no cap), ADR 0069
        self.max_bytes = max_bytes  # signed message bytes per batch (None: no cap), ADR 0069
        self._slots = threading.BoundedSemaphore(self.depth)
        self._claimed: Counter[tuple[str, Any]] = Counter()  # readings of the batches in flight
        self._lock = threading.Lock()
        self.held: list[Any] = []  # waiting for an in-flight batch that shares a reading, arrival order
        self._overflow = False  # some held message waits only because the last batch was full
        self.in_flight = 0

    def run(self) -> None:
        """Until a None arrives on the queue; then waits for the batches in flight and returns (what is
        still held back is left to the caller, which answers it as shutting down)."""
        with ThreadPoolExecutor(self.depth, thread_name_prefix="ledgerhub-ingest-tx") as pool:
            while True:
                self._slots.acquire()
                items, stop = self._drain()
                batch = self._select(items)
                if batch:
                    self._claim(batch, +1)
                    pool.submit(self._run_one, batch)
                else:
                    self._slots.release()
                if stop:
                    return

    def _drain(self) -> tuple[list[Any], bool]:
        """Block for the next event (a message, a wake-up, stop), then take whatever else is waiting."""
        if self._overflow:  # held only for size: they go now, whatever else is (not) waiting
            try:
                first = self.source.get_nowait()
            except queue.Empty:
                return [], False
        else:
            first = self.source.get()
        items = [first]
        room = self.max_batch - len(self.held)
        while len(items) < max(room, 1) and first is not None:
            try:
                item = self.source.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            if item is None:
                break
        stop = None in items
        return [i for i in items if i is not None and i is not WAKE], stop

    def _select(self, fresh: list[Any]) -> list[Any]:
        """The next batch, in arrival order; the rest stays held (a message is held when it shares a reading
        with a batch in flight or with an earlier held message)."""
        with self._lock:
            blocked = set(self._claimed)
        batch: list[Any] = []
        held: list[Any] = []
        readings = size = 0
        self._overflow = False
        for item in [*self.held, *fresh]:
            keys = reading_keys(item)
            if any(k in blocked for k in keys):
                held.append(item)
                blocked.update(keys)
            elif batch and self._full(len(batch), readings + len(keys), size + signed_size(item)):
                held.append(item)
                blocked.update(keys)
                self._overflow = True
            else:
                batch.append(item)
                readings += len(keys)
                size += signed_size(item)
        self.held = held
        return batch

    def _full(self, messages: int, readings: int, size: int) -> bool:
        """Would a batch of `messages` messages (the next one included), `readings` readings and `size`
        signed bytes be over a cap? Checked only for a batch that already holds a message."""
        return (
            messages >= self.max_batch
            or (self.max_readings is not None and readings > self.max_readings)
            or (self.max_bytes is not None and size > self.max_bytes)
        )

    def _claim(self, batch: list[Any], sign: int) -> None:
        with self._lock:
            for item in batch:
                for key in reading_keys(item):
                    self._claimed[key] += sign
                    if self._claimed[key] <= 0:
                        del self._claimed[key]
            self.in_flight += sign

    def _run_one(self, batch: list[Any]) -> None:
        try:
            self.run_batch(batch)
        except Exception:  # run_batch answers its own failures; this only keeps the slot accounting right
            log.exception("usage batch failed")
        finally:
            self._claim(batch, -1)
            self._slots.release()
            self.source.put(WAKE)
