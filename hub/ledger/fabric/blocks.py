"""Blocks for offline proofs, read from the peer through QSCC (`GetBlockByNumber`, ADR 0034).

The proof builder needs three things from a Fabric channel besides the transactions: whole blocks (every
envelope, because `data_hash` is SHA-256 over their concatenation), the orderer-signed metadata of each
block (which names the config block governing it), and that config block itself, the trust anchor. All of
it comes from the peer's ledger as the peer returns it; nothing is read from the hub's own files.
"""

from __future__ import annotations

from collections.abc import Callable

from fabric_protos.common import common_pb2

from hub.ledger.base import BlockRecord
from hub.ledger.fabric.records import validation_codes

__all__ = ["BlockReader", "last_config_index", "orderer_metadata", "validation_codes"]


def orderer_metadata(block: common_pb2.Block) -> common_pb2.Metadata:
    """The SIGNATURES metadata: value = OrdererBlockMetadata, signatures by the ordering service."""
    entries = block.metadata.metadata
    if len(entries) <= common_pb2.SIGNATURES:
        return common_pb2.Metadata()
    return common_pb2.Metadata.FromString(entries[common_pb2.SIGNATURES])


def last_config_index(block: common_pb2.Block) -> int:
    """The number of the config block that governs `block`, as the orderer signed it (Fabric 2.x+ keeps it
    in OrdererBlockMetadata; the LAST_CONFIG metadata entry is deprecated)."""
    value = orderer_metadata(block).value
    return common_pb2.OrdererBlockMetadata.FromString(value).last_config.index if value else 0


class BlockReader:
    """Whole blocks by number, each fetched once (a proof touches a block for several transactions)."""

    def __init__(self, fetch: Callable[[int], BlockRecord]) -> None:
        self._fetch = fetch
        self._cache: dict[int, common_pb2.Block] = {}

    def __call__(self, number: int) -> common_pb2.Block:
        if number not in self._cache:
            raw = self._fetch(number).raw.get("block")
            if raw is None:
                raise KeyError(f"block {number} carries no raw bytes")
            self._cache[number] = common_pb2.Block.FromString(raw)
        return self._cache[number]
