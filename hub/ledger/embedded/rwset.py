"""Read-write sets: what a simulated transaction read (with versions) and what it wants to write.

Shaped after Fabric's `KVRWSet`: key reads carry the version of the committed value seen (block number,
transaction index) or None when the key was absent; range queries keep the keys and versions they
returned, so validation can detect phantoms; writes are value or delete; metadata writes carry key-level
endorsement policies. Everything is sorted by key, so equal simulations produce equal bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import DecodeError, b64d, b64e

Version = tuple[int, int] | None


@dataclass(frozen=True)
class Entry:
    """A committed key: value, version and key-level endorsement policy (list of MSP ids) if any."""

    value: bytes
    version: tuple[int, int]
    policy: tuple[str, ...] | None = None


@dataclass
class RangeRead:
    start: str
    end: str
    results: list[tuple[str, Version]] = field(default_factory=list)
    exhausted: bool = False


@dataclass
class RWSet:
    reads: dict[str, Version] = field(default_factory=dict)
    ranges: list[RangeRead] = field(default_factory=list)
    writes: dict[str, bytes | None] = field(default_factory=dict)
    metadata: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def written_keys(self) -> list[str]:
        """Keys whose value or endorsement policy this transaction changes (what policies apply to)."""
        return sorted(set(self.writes) | set(self.metadata))

    def to_json(self) -> dict[str, Any]:
        return {
            "reads": [[k, list(v) if v else None] for k, v in sorted(self.reads.items())],
            "ranges": [
                {
                    "start": r.start,
                    "end": r.end,
                    "exhausted": r.exhausted,
                    "results": [[k, list(v) if v else None] for k, v in r.results],
                }
                for r in self.ranges
            ],
            "writes": [[k, None if v is None else b64e(v)] for k, v in sorted(self.writes.items())],
            "metadata": [[k, list(orgs)] for k, orgs in sorted(self.metadata.items())],
        }

    @classmethod
    def from_json(cls, obj: Any) -> RWSet:
        try:
            return cls(
                reads={k: _version(v) for k, v in obj["reads"]},
                ranges=[
                    RangeRead(
                        start=str(r["start"]),
                        end=str(r["end"]),
                        exhausted=bool(r["exhausted"]),
                        results=[(str(k), _version(v)) for k, v in r["results"]],
                    )
                    for r in obj["ranges"]
                ],
                writes={str(k): None if v is None else b64d(v) for k, v in obj["writes"]},
                metadata={str(k): tuple(str(o) for o in orgs) for k, orgs in obj["metadata"]},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad read-write set: {exc}") from exc


def _version(value: Any) -> Version:
    if value is None:
        return None
    block, index = value
    return int(block), int(index)
