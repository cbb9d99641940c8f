"""The `Stub`: everything the contract may ask of the ledger it runs on.

The contract only ever talks to this protocol, so the same code runs on the embedded ledger's simulator
and on a real Fabric peer (through `chaincode.shim`) without being able to tell them apart. The method set
mirrors fabric-chaincode-go's `ChaincodeStubInterface`, reduced to what the billing contract needs, with
two deliberate simplifications:

* key-level endorsement is expressed as a list of MSP ids whose members must all endorse
  (`set_key_endorsement`); each implementation turns it into its own policy format (Fabric: a
  `SignaturePolicyEnvelope` under the `VALIDATION_PARAMETER` metadata key);
* the creator is reduced to its MSP id and certificate; the contract authorises by org, never by person.

`InMemoryStub` is the reference implementation for unit tests: one transaction at a time over a dict,
with reads of the transaction's own writes, history and events recorded so tests can assert on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Fabric's composite key encoding: U+0000, object type, U+0000, then each attribute followed by U+0000.
# Keys that start with U+0000 never collide with simple keys, and a partial key is a prefix of its matches.
COMPOSITE_KEY_NAMESPACE = "\x00"
MIN_UNICODE_RUNE = "\x00"
MAX_UNICODE_RUNE = "\U0010ffff"


def create_composite_key(object_type: str, attributes: Sequence[str]) -> str:
    """Build a composite key exactly as Fabric's shim does (so both ledgers store the same keys)."""
    _check_key_part(object_type)
    for attr in attributes:
        _check_key_part(attr)
    return COMPOSITE_KEY_NAMESPACE + object_type + MIN_UNICODE_RUNE + "".join(
        a + MIN_UNICODE_RUNE for a in attributes
    )


def split_composite_key(key: str) -> tuple[str, list[str]]:
    """Inverse of `create_composite_key`."""
    if not key.startswith(COMPOSITE_KEY_NAMESPACE):
        raise ValueError(f"not a composite key: {key!r}")
    parts = key[1:].split(MIN_UNICODE_RUNE)
    # the encoding ends with a separator, so the last part is always empty
    return parts[0], parts[1:-1]


def partial_key_range(object_type: str, attributes: Sequence[str]) -> tuple[str, str]:
    """The [start, end) range that holds every key beginning with the given partial composite key."""
    start = create_composite_key(object_type, attributes)
    return start, start + MAX_UNICODE_RUNE


def _check_key_part(part: str) -> None:
    if MIN_UNICODE_RUNE in part or MAX_UNICODE_RUNE in part:
        raise ValueError("composite key parts must not contain U+0000 or U+10FFFF")


@dataclass(frozen=True)
class KeyModification:
    """One entry of a key's history, newest first as Fabric returns it."""

    tx_id: str
    value: bytes
    timestamp: dt.datetime
    is_delete: bool


@runtime_checkable
class Stub(Protocol):
    """What a transaction can see and do. One instance serves exactly one transaction."""

    # --- transaction context -------------------------------------------------------------
    @property
    def tx_id(self) -> str: ...

    @property
    def channel_id(self) -> str: ...

    def tx_timestamp(self) -> dt.datetime:
        """The proposal's timestamp (UTC, aware). The only clock the contract may use."""
        ...

    def creator_msp_id(self) -> str: ...

    def creator_cert(self) -> bytes:
        """PEM certificate of the submitting identity."""
        ...

    def transient(self) -> Mapping[str, bytes]:
        """Transient data of the proposal (not written to the ledger)."""
        ...

    # --- state ------------------------------------------------------------------------------
    def get_state(self, key: str) -> bytes | None: ...

    def get_multiple_states(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several keys in one round trip (Fabric 2.5+ GET_STATE_MULTIPLE); same order as `keys`."""
        ...

    def put_state(self, key: str, value: bytes) -> None: ...

    def del_state(self, key: str) -> None: ...

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        """Keys in [start, end) in byte order of their UTF-8 encoding."""
        ...

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: Sequence[str]
    ) -> Iterator[tuple[str, bytes]]: ...

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]: ...

    # --- events and endorsement --------------------------------------------------------------
    def set_event(self, name: str, payload: bytes) -> None:
        """Fabric keeps one event per transaction: a second call replaces the first."""
        ...

    def set_key_endorsement(self, key: str, orgs: Sequence[str]) -> None:
        """From now on, a write to `key` needs an endorsement from a member of each org in `orgs`."""
        ...

    def get_key_endorsement(self, key: str) -> list[str] | None: ...


@dataclass
class _Committed:
    value: bytes
    endorsement: list[str] | None = None


@dataclass
class InMemoryWorld:
    """Committed state shared by successive `InMemoryStub` transactions (a tiny ledger for tests)."""

    state: dict[str, _Committed] = field(default_factory=dict)
    history: dict[str, list[KeyModification]] = field(default_factory=dict)
    events: list[tuple[str, str, bytes]] = field(default_factory=list)  # (tx_id, name, payload)
    write_log: list[tuple[str, list[tuple[str, bytes | None]]]] = field(default_factory=list)

    def value(self, key: str) -> bytes | None:
        entry = self.state.get(key)
        return entry.value if entry else None


class InMemoryStub:
    """A `Stub` over an `InMemoryWorld`. Writes become visible to later reads of the same
    transaction and are applied to the world only by `commit()` (so a failed transaction writes nothing).
    """

    def __init__(
        self,
        world: InMemoryWorld,
        *,
        tx_id: str,
        timestamp: dt.datetime,
        creator_msp_id: str,
        creator_cert: bytes = b"",
        transient: Mapping[str, bytes] | None = None,
        channel_id: str = "billing",
    ) -> None:
        if timestamp.tzinfo is None:
            raise ValueError("tx timestamp must be timezone-aware")
        self._world = world
        self._tx_id = tx_id
        self._timestamp = timestamp.astimezone(dt.UTC)
        self._creator = creator_msp_id
        self._cert = creator_cert
        self._transient = dict(transient or {})
        self._channel = channel_id
        self._writes: dict[str, bytes | None] = {}
        self._write_order: list[str] = []
        self._endorsements: dict[str, list[str]] = {}
        self.event: tuple[str, bytes] | None = None

    # transaction context
    @property
    def tx_id(self) -> str:
        return self._tx_id

    @property
    def channel_id(self) -> str:
        return self._channel

    def tx_timestamp(self) -> dt.datetime:
        return self._timestamp

    def creator_msp_id(self) -> str:
        return self._creator

    def creator_cert(self) -> bytes:
        return self._cert

    def transient(self) -> Mapping[str, bytes]:
        return dict(self._transient)

    # state
    def get_state(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._world.value(key)

    def get_multiple_states(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get_state(k) for k in keys]

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ValueError("empty key")
        if not isinstance(value, bytes | bytearray):
            raise TypeError("state values are bytes")
        self._record_write(key, bytes(value))

    def del_state(self, key: str) -> None:
        self._record_write(key, None)

    def _record_write(self, key: str, value: bytes | None) -> None:
        if key not in self._writes:
            self._write_order.append(key)
        self._writes[key] = value

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        # Like Fabric, a range query sees committed state only, not this transaction's own writes.
        lo, hi = start.encode(), end.encode() if end else None
        keys = sorted(
            (k for k in self._world.state if k.encode() >= lo and (hi is None or k.encode() < hi)),
            key=str.encode,
        )
        for k in keys:
            yield k, self._world.state[k].value

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: Sequence[str]
    ) -> Iterator[tuple[str, bytes]]:
        start, end = partial_key_range(object_type, attributes)
        return self.get_state_by_range(start, end)

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        yield from reversed(self._world.history.get(key, []))

    # events and endorsement
    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name must not be empty")
        self.event = (name, bytes(payload))

    def set_key_endorsement(self, key: str, orgs: Sequence[str]) -> None:
        self._endorsements[key] = sorted(set(orgs))

    def get_key_endorsement(self, key: str) -> list[str] | None:
        if key in self._endorsements:
            return list(self._endorsements[key])
        entry = self._world.state.get(key)
        return list(entry.endorsement) if entry and entry.endorsement else None

    # test helpers (not part of the protocol)
    @property
    def writes(self) -> list[tuple[str, bytes | None]]:
        """This transaction's writes in the order they were made (what determinism tests compare)."""
        return [(k, self._writes[k]) for k in self._write_order]

    def commit(self) -> None:
        """Apply the writes, history and event to the world."""
        for key, value in self.writes:
            if value is None:
                self._world.state.pop(key, None)
            else:
                prev = self._world.state.get(key)
                self._world.state[key] = _Committed(value, prev.endorsement if prev else None)
            self._world.history.setdefault(key, []).append(
                KeyModification(self._tx_id, value or b"", self._timestamp, value is None)
            )
        for key, orgs in self._endorsements.items():
            if key in self._world.state:
                self._world.state[key].endorsement = orgs
        if self.event:
            self._world.events.append((self._tx_id, *self.event))
        self._world.write_log.append((self._tx_id, self.writes))


def iter_values(pairs: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """Values of a range or partial-key scan, for callers that do not need the keys."""
    for _, value in pairs:
        yield value
