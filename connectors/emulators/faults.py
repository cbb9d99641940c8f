"""Fault injection shared by the ERP emulators (SAP SOAP now, SAP OData and Oracle REST later).

An emulator asks `FaultInjector.next()` once per incoming business request and acts the answer out. The
kinds are protocol-neutral, so every emulator means the same thing by them:

- `error_5xx`: answer 500 (SOAP fault / JSON error) *without* processing. The client cannot know that.
- `timeout`: hang past the client's read timeout, then process anyway (the client has given up: the
  posting lands while the caller thinks it failed, the nastiest real case).
- `slow`: answer correctly, but late (below the client timeout).
- `drop_after_post`: process and commit, then close the connection without answering.
- `reset`: abort the TCP connection (RST) before processing.
- `reject`: a business rejection (for SAP a severity 3/4 log); nothing is posted.

Faults come from a per-request queue (tests script exactly what the next requests see) and, when the queue
is empty, from a seeded random draw with a probability, so a run with the same seed and the same request
order injects the same faults. Thread-safe: emulators serve requests on many threads.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["error_5xx", "timeout", "slow", "drop_after_post", "reset", "reject"]
ALL_FAULTS: tuple[FaultKind, ...] = ("error_5xx", "timeout", "slow", "drop_after_post", "reset", "reject")


@dataclass
class FaultPlan:
    probability: float = 0.0
    kinds: tuple[FaultKind, ...] = ALL_FAULTS
    seed: int | None = None
    hang_seconds: float = 2.0  # a `timeout` fault hangs this long; set it above the client's read timeout
    slow_seconds: float = 0.2  # a `slow` answer is this late; set it below the client's read timeout


class FaultInjector:
    """Decides, per request, which fault (if any) an emulator acts out, and counts what it injected."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[FaultKind] = deque()
        self.injected: Counter[str] = Counter()
        self.configure(plan or FaultPlan())

    def configure(self, plan: FaultPlan) -> None:
        for kind in plan.kinds:
            if kind not in ALL_FAULTS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(ALL_FAULTS)}")
        if not 0.0 <= plan.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)

    def queue(self, kinds: FaultKind | Iterable[FaultKind], count: int = 1) -> None:
        """The next requests get these faults, in order (`count` times each)."""
        items = [kinds] if isinstance(kinds, str) else list(kinds)
        for kind in items:
            if kind not in ALL_FAULTS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            for kind in items:
                self._queue.extend([kind] * count)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.injected.clear()
            self.plan = FaultPlan()
            self._rng = random.Random(None)

    def next(self, *, allowed: Iterable[FaultKind] | None = None) -> FaultKind | None:
        """The fault for this request, or None. `allowed` narrows the random draw (an emulator replaying a
        known message id cannot reject it, for instance); a queued fault outside `allowed` stays queued."""
        allowed_set = set(allowed) if allowed is not None else set(ALL_FAULTS)
        with self._lock:
            if self._queue and self._queue[0] in allowed_set:
                kind = self._queue.popleft()
                self.injected[kind] += 1
                return kind
            if self.plan.probability <= 0:
                return None
            hit = self._rng.random() < self.plan.probability
            choice = self._rng.choice(self.plan.kinds) if self.plan.kinds else None
            if not hit or choice is None or choice not in allowed_set:
                return None
            self.injected[choice] += 1
            return choice

    def apply(self, body: Mapping[str, Any]) -> None:
        """Configure from a JSON control request: {"probability", "kinds", "seed", "hang_seconds",
        "slow_seconds", "queue": [kind, ...], "clear": bool}."""
        if body.get("clear"):
            self.clear()
        plan_keys = {"probability", "kinds", "seed", "hang_seconds", "slow_seconds"}
        if plan_keys & set(body):
            current = self.plan
            self.configure(
                FaultPlan(
                    probability=float(body.get("probability", current.probability)),
                    kinds=tuple(body.get("kinds", current.kinds)),
                    seed=body.get("seed", current.seed),
                    hang_seconds=float(body.get("hang_seconds", current.hang_seconds)),
                    slow_seconds=float(body.get("slow_seconds", current.slow_seconds)),
                )
            )
        if body.get("queue"):
            self.queue(body["queue"])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "probability": self.plan.probability,
                "kinds": list(self.plan.kinds),
                "seed": self.plan.seed,
                "hang_seconds": self.plan.hang_seconds,
                "slow_seconds": self.plan.slow_seconds,
                "queued": list(self._queue),
                "injected": dict(self.injected),
            }
