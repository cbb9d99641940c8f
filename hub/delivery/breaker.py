"""A circuit breaker per ERP target (connector + endpoint).

When an ERP is down, every due delivery to it would time out in turn, each holding a worker for the
whole client timeout. After `threshold` consecutive failures the breaker opens: deliveries to that target
are postponed without an attempt (and without using up their attempt budget) for `open_seconds`; then one
trial call is let through (half-open). A success closes it, a failure opens it again. Business rejections
count as successes: the ERP answered. State is per process; with several dispatcher processes each has
its own view, which only makes the protection a little less tight.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], dt.datetime]


@dataclass
class _State:
    failures: int = 0
    opened_at: dt.datetime | None = None
    trial_running: bool = False


class CircuitBreaker:
    def __init__(self, threshold: int = 5, open_seconds: float = 30.0,
                 clock: Clock = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.threshold = threshold
        self.open_for = dt.timedelta(seconds=open_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def state(self, key: str) -> str:
        with self._lock:
            s = self._states.get(key)
            if s is None or s.opened_at is None:
                return "closed"
            return "open" if self.clock() < s.opened_at + self.open_for else "half_open"

    def allow(self, key: str) -> dt.datetime | None:
        """None when a call may go ahead; else when to try again."""
        with self._lock:
            s = self._states.setdefault(key, _State())
            if s.opened_at is None:
                return None
            reopen = s.opened_at + self.open_for
            now = self.clock()
            if now < reopen:
                return reopen
            if s.trial_running:
                return now + self.open_for / 4
            s.trial_running = True
            return None

    def success(self, key: str) -> None:
        with self._lock:
            self._states[key] = _State()

    def failure(self, key: str) -> None:
        with self._lock:
            s = self._states.setdefault(key, _State())
            s.failures += 1
            s.trial_running = False
            if s.opened_at is not None or s.failures >= self.threshold:
                s.opened_at = self.clock()
