"""Chain look-ups through QSCC (the peer's query system chaincode): height, blocks, transactions.

`query(fn, args, as_org, lookup)` evaluates one QSCC function on the channel; with `lookup` = (what, key),
a "no such block/transaction" answer raises `LedgerNotFound` (decided in `hub.ledger.fabric.errors`).
"""

from __future__ import annotations

from collections.abc import Callable

from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.peer import transaction_pb2

from hub.ledger.base import BlockHeader, BlockRecord, LedgerNotFound, TransactionRecord
from hub.ledger.fabric import records

Query = Callable[[str, list[str], "str | None", "tuple[str, object] | None"], bytes]


class ChainLookups:
    """The channel's chain as the hub's records, read through `query` (QSCC on one org's peer)."""

    def __init__(self, query: Query) -> None:
        self._query = query

    def height(self, as_org: str | None = None) -> int:
        """Block height of the channel on the peer behind `as_org`'s gateway (default org's otherwise)."""
        return ledger_pb2.BlockchainInfo.FromString(self._query("GetChainInfo", [], as_org, None)).height

    def block(self, number: int) -> BlockRecord:
        if number < 0:  # QSCC would refuse to parse it; no ledger has such a block
            raise LedgerNotFound("block", number)
        return records.block_record(self._query("GetBlockByNumber", [str(number)], None, ("block", number)))

    def block_header(self, number: int) -> BlockHeader:
        """QSCC serves whole blocks only: the header is read off the block."""
        record = self.block(number)
        header = common_pb2.Block.FromString(record.raw["block"]).header
        return BlockHeader(
            number, record.previous_hash, record.data_hash, record.hash, header.SerializeToString()
        )

    def block_of_tx(self, tx_id: str) -> int:
        found = ("transaction", tx_id)
        return common_pb2.Block.FromString(self._query("GetBlockByTxID", [tx_id], None, found)).header.number

    def tx(self, tx_id: str) -> TransactionRecord:
        found = ("transaction", tx_id)
        processed = transaction_pb2.ProcessedTransaction.FromString(
            self._query("GetTransactionByID", [tx_id], None, found)
        )
        block = common_pb2.Block.FromString(self._query("GetBlockByTxID", [tx_id], None, found))
        envelope_bytes = processed.transactionEnvelope.SerializeToString()
        index = next(
            (i for i, data in enumerate(block.data.data) if data == envelope_bytes),
            _index_by_tx_id(block, tx_id),
        )
        status = transaction_pb2.TxValidationCode.Name(processed.validationCode)
        return records.transaction_record(
            envelope_bytes, block=block.header.number, index=index, status=status
        )


def _index_by_tx_id(block: common_pb2.Block, tx_id: str) -> int:
    for i, data in enumerate(block.data.data):
        payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(data).payload)
        if common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id == tx_id:
            return i
    return -1
