"""Point reads of one state snapshot, remembered for the rest of it (endorsement runs several simulations
of one proposal on one snapshot, ADR 0004)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from chaincode.stub import KeyModification

from .rwset import Entry
from .store import StateReader


class MemoReader:
    """Point reads of one snapshot, remembered for the rest of that snapshot (sound: it cannot change).
    Scans and history go to the snapshot unchanged."""

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.seen: dict[str, Entry | None] = {}

    def get(self, key: str) -> Entry | None:
        if key not in self.seen:
            self.seen[key] = self.base.get(key)
        return self.seen[key]

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        seen = self.seen
        missing = [k for k in dict.fromkeys(keys) if k not in seen]
        if missing:
            seen.update(zip(missing, self.base.get_many(missing), strict=True))
        return [seen[k] for k in keys]

    def range(self, start: str, end: str) -> Iterator[tuple[str, Entry]]:
        return self.base.range(start, end)

    def history(self, key: str) -> Iterator[KeyModification]:
        return self.base.history(key)


def policy_of(entries: Mapping[str, Entry | None], key: str) -> tuple[str, ...] | None:
    entry = entries.get(key)
    return entry.policy if entry else None
