"""Block headers and the genesis configuration.

A block header is {number, previous_hash, data_hash}; the block hash is SHA-256 of its canonical bytes,
so each header commits to the whole chain before it. `data_hash` is SHA-256 of the concatenated SHA-256
hashes of the block's envelopes: one transaction can be proven part of a block with the list of
transaction hashes alone. Validation codes live outside the hashed data (Fabric's block metadata).
Block 0 holds one configuration document instead of transactions: network id, orgs with their root
certificates, and the chaincode endorsement policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .codec import DecodeError, canonical, loads, sha256

GENESIS_PREVIOUS = b"\x00" * 32


def data_hash(items: Sequence[bytes]) -> bytes:
    return sha256(b"".join(sha256(item) for item in items))


def encode_header(number: int, previous_hash: bytes, data: bytes) -> bytes:
    return canonical({"number": number, "previous_hash": previous_hash.hex(), "data_hash": data.hex()})


@dataclass(frozen=True)
class Header:
    number: int
    previous_hash: bytes
    data_hash: bytes

    @classmethod
    def decode(cls, data: bytes) -> Header:
        obj = loads(data)
        try:
            return cls(
                int(obj["number"]), bytes.fromhex(obj["previous_hash"]), bytes.fromhex(obj["data_hash"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad block header: {exc}") from exc


def encode_metadata(statuses: Sequence[str]) -> bytes:
    return canonical({"validation": list(statuses)})


@dataclass(frozen=True)
class GenesisConfig:
    network_id: str
    orgs: dict[str, list[bytes]]  # MSP id -> root certificates (PEM)
    chaincode_orgs: tuple[str, ...]  # chaincode policy: a member of ANY of these
    chaincode: str

    def encode(self) -> bytes:
        return canonical(
            {
                "type": "genesis",
                "network_id": self.network_id,
                "orgs": {org: [p.decode("ascii") for p in pems] for org, pems in self.orgs.items()},
                "chaincode": self.chaincode,
                "chaincode_policy": {"any_of": list(self.chaincode_orgs)},
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> GenesisConfig:
        obj: Any = loads(data)
        try:
            if obj["type"] != "genesis":
                raise ValueError("not a genesis configuration")
            return cls(
                network_id=str(obj["network_id"]),
                orgs={str(o): [str(p).encode("ascii") for p in pems] for o, pems in obj["orgs"].items()},
                chaincode_orgs=tuple(str(o) for o in obj["chaincode_policy"]["any_of"]),
                chaincode=str(obj["chaincode"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(f"bad genesis configuration: {exc}") from exc
