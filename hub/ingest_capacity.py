"""Ingestion's own, bounded capacity (ADR 0029): a slow ledger must not stall the rest of the API.

A usage post used to run in the server's shared threadpool and block one of its threads until the ledger
committed (up to two minutes), and `wait=false` messages went into an unbounded queue. Under a slow ledger
a burst of posts took every thread, and health checks and reads queued behind them. Now:

* the edge work of a post (schema, owner, signature, replay lookup) runs on ingestion's own executor of
  `edge_threads` threads, and at most `edge_backlog` more posts may wait for one of them;
* a `wait=true` post waits for its commit without holding any thread (an awaited future), and at most
  `max_waiting` posts wait at once;
* at most `max_pending` messages are accepted and not yet answered by the ledger (queued or in the
  transaction being committed): that bounds the `wait=false` queue too.
Past any bound the post is answered at once with `503 ingest_saturated` and `Retry-After`; nothing of it
is recorded, so the device simply sends it again later.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from hub.config import Settings
from hub.errors import Unavailable

Answer = tuple[int, dict[str, Any]]


class Admitted(Protocol):
    """A message accepted at the edge: its (device_id, message_id) and the future of its ledger answer."""

    key: tuple[str, str]
    future: Future[Answer]


@dataclass(frozen=True)
class Capacity:
    edge_threads: int = 8
    edge_backlog: int = 256
    max_pending: int = 5000
    max_waiting: int = 2000
    wait_seconds: float = 120.0
    retry_after_seconds: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Capacity:
        return cls(
            edge_threads=settings.ingest_edge_threads,
            edge_backlog=settings.ingest_edge_backlog,
            max_pending=settings.ingest_max_pending,
            max_waiting=settings.ingest_max_waiting,
            wait_seconds=settings.ingest_wait_seconds,
            retry_after_seconds=settings.ingest_retry_after_seconds,
        )


class Slots:
    """A counter with a ceiling that never blocks: `take()` is False when full (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


def saturated(capacity: Capacity, what: str) -> Answer:
    """`503 ingest_saturated`; the router turns `retry_after` into the `Retry-After` header."""
    error = Unavailable(
        "ingest_saturated", "Ingestion is saturated",
        f"{what}; nothing of this message was recorded: send it again after {capacity.retry_after_seconds} s",
        retry_after=capacity.retry_after_seconds,
    )
    return error.status, error.problem()


class BoundedFront:
    """The async front of ingestion: runs `admit` (the edge: an answer now, or an `Admitted` message) on
    its own executor and waits for the commit without a thread, each within its bound."""

    def __init__(
        self, capacity: Capacity, admit: Callable[[Any, Any], Answer | Admitted], metrics: Any
    ) -> None:
        self.capacity = capacity
        self.admit = admit
        self.metrics = metrics
        self.wait_timeout = capacity.wait_seconds
        self.edge_slots = Slots(capacity.edge_threads + capacity.edge_backlog)
        self.waiting = Slots(capacity.max_waiting)
        self._edge: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._edge is None:
            self._edge = ThreadPoolExecutor(
                self.capacity.edge_threads, thread_name_prefix="ledgerhub-ingest-edge"
            )

    def stop(self) -> None:
        if self._edge is not None:
            self._edge.shutdown(wait=True, cancel_futures=True)
            self._edge = None

    def saturated(self, what: str) -> Answer:
        self.metrics.messages.labels("saturated").inc()
        return saturated(self.capacity, what)

    async def handle(self, raw: Any, principal: Any, *, wait: bool) -> Answer:
        if not self.edge_slots.take():
            return self.saturated("too many usage posts are being checked")
        waiter = False
        try:
            if wait:
                if not self.waiting.take():
                    return self.saturated("too many usage posts are waiting for their commit")
                waiter = True
            edge = self._edge
            if edge is None:
                raise RuntimeError("ingestion is not running")
            outcome = await asyncio.get_running_loop().run_in_executor(edge, self.admit, raw, principal)
        except BaseException:
            if waiter:
                self.waiting.give()
            raise
        finally:
            self.edge_slots.give()
        if isinstance(outcome, tuple):
            if waiter:
                self.waiting.give()
            return outcome
        if not wait:
            self.metrics.messages.labels("queued").inc()
            return 202, {"status": "queued", "message_id": outcome.key[1]}
        try:
            # shielded: a caller that stops waiting must not cancel the future other callers share
            committed = asyncio.shield(asyncio.wrap_future(outcome.future))
            return await asyncio.wait_for(committed, self.wait_timeout)
        except TimeoutError:
            return 503, Unavailable(
                "ingest_timeout", "Not committed yet",
                "the message is still queued; replay it with the same message_id to learn the outcome",
            ).problem()
        finally:
            self.waiting.give()
