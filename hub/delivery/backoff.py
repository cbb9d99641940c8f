"""Exponential backoff with full jitter: the wait before attempt n+1 is uniform in
[0, min(cap, base * 2**(n-1))]. Full jitter spreads retries of many deliveries that failed together (an
ERP outage) instead of having them return in waves (AWS architecture blog, "Exponential Backoff And
Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after `attempt` failed attempts (attempt >= 1)."""
        exponent = max(0, min(attempt - 1, 62))
        return min(self.cap, self.base * (2**exponent))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))
