"""The endorser's clock check: the one place the contract looks at a clock other than the tx timestamp.

The proposal timestamp is chosen by the client that builds the proposal. The contract uses it as its only
clock (deterministic: every endorser sees the same value), so a client with its own Fabric SDK could
forward-date `CloseBillingPeriod` (close a period before it has ended) or record readings from the future.
ARCHITECTURE.md sanctions one exception to determinism for this: an endorser may *refuse* a proposal whose
timestamp is too far from its own clock. A refusal writes nothing, so it cannot make write sets differ; at
worst two endorsers disagree about endorsing, which the endorsement policy already handles.

`ClockBound(max_skew, now)` is that check with an injectable clock. The contract's dispatch
(`chaincode.contract.bounded`) applies it to every transaction function before the function runs; hosts
configure it: `python -m chaincode` from `CHAINCODE_MAX_CLOCK_SKEW_SECONDS` (`from_env`), the embedded
ledger from its construction (`max_clock_skew`, `endorser_clock`). See ADR 0027.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chaincode.errors import ChaincodeError

DEFAULT_MAX_SKEW = dt.timedelta(minutes=5)
ENV_MAX_SKEW = "CHAINCODE_MAX_CLOCK_SKEW_SECONDS"


def system_clock() -> dt.datetime:
    """The endorsing host's clock (UTC, aware)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ClockBound:
    """A proposal timestamp is accepted when it is within `max_skew` of `now()`, in either direction."""

    max_skew: dt.timedelta = DEFAULT_MAX_SKEW
    now: Callable[[], dt.datetime] = field(default=system_clock, compare=False)

    def __post_init__(self) -> None:
        if self.max_skew <= dt.timedelta(0):
            raise ValueError("max_skew must be positive")

    def check(self, tx_timestamp: dt.datetime, fn: str) -> None:
        """Raise `tx_timestamp_skew` when `tx_timestamp` is too far from this endorser's clock."""
        local = self.now()
        if tx_timestamp.tzinfo is None or local.tzinfo is None:
            raise ValueError("clock values must be timezone-aware")
        skew = tx_timestamp - local
        if abs(skew) <= self.max_skew:
            return
        direction = "ahead of" if skew > dt.timedelta(0) else "behind"
        raise ChaincodeError(
            "tx_timestamp_skew",
            f"{fn} proposal timestamp is {abs(skew).total_seconds():.0f} s {direction} this endorser's clock "
            f"(at most {self.max_skew.total_seconds():.0f} s allowed); refused, nothing written",
            function=fn,
            tx_timestamp=_iso(tx_timestamp),
            endorser_time=_iso(local),
            max_skew_seconds=int(self.max_skew.total_seconds()),
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, now: Callable[[], dt.datetime] = system_clock
    ) -> ClockBound | None:
        """`CHAINCODE_MAX_CLOCK_SKEW_SECONDS`: seconds (default 300); `off` disables the check (only for
        replaying an old ledger's transactions, never on a peer that endorses live proposals)."""
        source = os.environ if env is None else env
        text = source.get(ENV_MAX_SKEW, "").strip()
        if not text:
            return cls(DEFAULT_MAX_SKEW, now)
        if text.lower() == "off":
            return None
        return cls(parse_skew(text, ENV_MAX_SKEW), now)


def parse_skew(text: str | float, name: str = "max clock skew") -> dt.timedelta:
    """A positive, finite number of seconds; ValueError naming `name` otherwise."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds or 'off', not {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {text!r}")
    return dt.timedelta(seconds=seconds)


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
