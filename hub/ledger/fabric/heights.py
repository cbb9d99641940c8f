"""Read-your-writes across orgs on one Fabric channel.

A gateway reports a commit once *its own* peer holds the block; another org's peer may still be a block
behind and would answer from older state: an evaluate that misses what this client just wrote, an
endorsement that reads stale keys (MVCC_READ_CONFLICT at commit), refuses on state it lacks
(`unknown_invoice`) or disagrees with the other endorser ("ProposalResponsePayloads do not match").
`PeerHeights` remembers the height this client's commits reached and the height each org's peer is known
to hold, and waits (bounded) for a peer to catch up before it is asked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from hub.ledger.base import LedgerError

log = logging.getLogger(__name__)


class PeerHeights:
    """`height_of(org)` asks that org's peer for its block height (QSCC GetChainInfo)."""

    def __init__(self, height_of: Callable[[str], int]) -> None:
        self._height_of = height_of
        self._lock = threading.Lock()
        self._committed = 0
        self._known: dict[str, int] = {}

    def committed(self, org: str, block: int) -> None:
        """This client's transaction committed in `block`, as `org`'s peer reported."""
        self.note(org, block + 1)
        with self._lock:
            self._committed = max(self._committed, block + 1)

    def note(self, org: str, height: int) -> None:
        with self._lock:
            if height > self._known.get(org, 0):
                self._known[org] = height

    def catch_up(self, org: str, timeout: float) -> None:
        """Wait (at most `timeout` s) until `org`'s peer holds every block this client committed. A peer
        that cannot say, or is still behind at the deadline, is asked anyway: a stale read is retried by
        the caller."""
        need = self._committed
        if self._known.get(org, 0) >= need:
            return
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                height = self._height_of(org)
            except LedgerError as err:
                log.debug("height of %s's peer unknown (%s)", org, err)
                self.note(org, need)  # and do not ask again for this height
                return
            self.note(org, height)
            if height >= need or time.monotonic() >= deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def catch_up_others(self, orgs: Iterable[str], acting: str, timeout: float) -> bool:
        """Bring every org's peer but `acting`'s up to this client's last commit; True if one was behind
        (only then is asking again worth it)."""
        need = self._committed
        lagging = False
        for org in [o for o in orgs if o != acting and self._known.get(o, 0) < need]:
            try:
                lagging = lagging or self._height_of(org) < need
            except LedgerError:
                continue
            self.catch_up(org, timeout)
        return lagging

    def level(self, orgs: Iterable[str], timeout: float) -> None:
        """Wait (at most `timeout` s) until every org's peer holds the highest height any of them reports.
        Two endorsers can disagree without either lagging behind this client: a block someone else
        committed (a new chaincode definition, ADR 0063) reached one peer before the other."""
        heights: dict[str, int] = {}
        for org in orgs:
            try:
                heights[org] = self._height_of(org)
            except LedgerError:
                continue
            self.note(org, heights[org])
        top = max(heights.values(), default=0)
        deadline = time.monotonic() + timeout
        for org in [o for o, h in heights.items() if h < top]:
            delay = 0.02
            while time.monotonic() < deadline:
                try:
                    height = self._height_of(org)
                except LedgerError:
                    break
                self.note(org, height)
                if height >= top:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
