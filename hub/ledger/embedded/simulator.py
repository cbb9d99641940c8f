"""The embedded peer's `Stub`: runs one transaction against a committed-state snapshot, recording its
read-write set instead of writing anything.

Semantics follow `chaincode.stub.InMemoryStub` (the reference the contract is tested with) and Fabric:
reads see committed state plus the transaction's own writes; range and partial-key scans see committed
state only; history is committed history; one event per transaction; a key-level policy set here applies
from the next transaction on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from chaincode.stub import KeyModification, partial_key_range

from .codec import key_bytes
from .rwset import Entry, RangeRead, RWSet
from .transaction import Proposal


class Reader(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]: ...

    def range(self, start: str, end: str) -> Iterator[tuple[str, Entry]]: ...

    def history(self, key: str) -> Iterator[KeyModification]: ...


class SimulationStub:
    """A `chaincode.stub.Stub` over a snapshot `Reader`; `rwset` and `event` hold the outcome."""

    def __init__(
        self, reader: Reader, proposal: Proposal, transient: Mapping[str, bytes] | None = None
    ) -> None:
        self._reader = reader
        self._proposal = proposal
        self._timestamp = proposal.datetime()
        self._transient = dict(transient or {})
        self.rwset = RWSet()
        self.event: tuple[str, bytes] | None = None
        self._scans: list[Iterator[tuple[str, bytes]]] = []

    # --- transaction context ---------------------------------------------------------------------
    @property
    def tx_id(self) -> str:
        return self._proposal.tx_id

    @property
    def channel_id(self) -> str:
        return self._proposal.channel

    def tx_timestamp(self) -> dt.datetime:
        return self._timestamp

    def creator_msp_id(self) -> str:
        return self._proposal.creator_msp_id

    def creator_cert(self) -> bytes:
        return self._proposal.creator_cert

    def transient(self) -> Mapping[str, bytes]:
        return dict(self._transient)

    # --- state -----------------------------------------------------------------------------------
    def _record_read(self, key: str, entry: Entry | None) -> None:
        if key not in self.rwset.reads:
            self.rwset.reads[key] = entry.version if entry else None

    def get_state(self, key: str) -> bytes | None:
        _check_key(key)
        if key in self.rwset.writes:
            return self.rwset.writes[key]
        entry = self._reader.get(key)
        self._record_read(key, entry)
        return entry.value if entry else None

    def get_multiple_states(self, keys: Sequence[str]) -> list[bytes | None]:
        for key in keys:
            _check_key(key)
        missing = [k for k in dict.fromkeys(keys) if k not in self.rwset.writes]
        fetched = dict(zip(missing, self._reader.get_many(missing), strict=True))
        out: list[bytes | None] = []
        for key in keys:
            if key in self.rwset.writes:
                out.append(self.rwset.writes[key])
            else:
                entry = fetched[key]
                self._record_read(key, entry)
                out.append(entry.value if entry else None)
        return out

    def put_state(self, key: str, value: bytes) -> None:
        _check_key(key)
        if not isinstance(value, bytes | bytearray):
            raise TypeError("state values are bytes")
        self.rwset.writes[key] = bytes(value)

    def del_state(self, key: str) -> None:
        _check_key(key)
        self.rwset.writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        record = RangeRead(start, end)
        self.rwset.ranges.append(record)
        scan = self._scan(record)
        self._scans.append(scan)
        return scan

    def finish(self) -> None:
        """Close scans the chaincode left open, so no cursor outlives the snapshot."""
        for scan in self._scans:
            scan.close()  # type: ignore[attr-defined]
        self._scans.clear()

    def _scan(self, record: RangeRead) -> Iterator[tuple[str, bytes]]:
        for key, entry in self._reader.range(record.start, record.end):
            record.results.append((key, entry.version))
            yield key, entry.value
        record.exhausted = True

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: Sequence[str]
    ) -> Iterator[tuple[str, bytes]]:
        start, end = partial_key_range(object_type, attributes)
        return self.get_state_by_range(start, end)

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        _check_key(key)
        return self._reader.history(key)

    # --- events and endorsement ------------------------------------------------------------------
    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name must not be empty")
        self.event = (name, bytes(payload))

    def set_key_endorsement(self, key: str, orgs: Sequence[str]) -> None:
        _check_key(key)
        if isinstance(orgs, str) or not orgs or not all(isinstance(o, str) and o for o in orgs):
            raise ValueError("key endorsement needs a non-empty list of MSP ids")
        self.rwset.metadata[key] = tuple(sorted(set(orgs)))

    def get_key_endorsement(self, key: str) -> list[str] | None:
        _check_key(key)
        if key in self.rwset.metadata:
            return list(self.rwset.metadata[key])
        entry = self._reader.get(key)
        self._record_read(key, entry)
        return list(entry.policy) if entry and entry.policy else None


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("state keys are non-empty strings")
    key_bytes(key)
