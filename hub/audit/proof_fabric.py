"""The Fabric part of a proof bundle: config block, whole blocks, the chaincode definition (ADR 0034).

`hub.audit.proof.build_bundle` gathers the records and the transactions through the `Ledger` protocol as
for the embedded ledger; for a Fabric ledger this module adds what makes them checkable offline:

- `ledger.config`: the config block that the orderer-signed metadata of the proof's first block names as
  its last config (on a channel never reconfigured, block 0: the genesis block). Its header hash is the
  anchor. If the configuration changed between the proof's blocks, `ledger.config_updates` holds every
  later config block up to the one governing the last block (ADR 0057).
- `ledger.chaincode`: where the chaincode definition in force sits (the `_lifecycle` commit transaction).
  Every chaincode transaction reads `_lifecycle` `namespaces/fields/<cc>/Sequence`; the version of that
  read *is* the definition's (block, index), so no search is needed and the verifier can hold each
  transaction to the definition it ran under.
- `blocks`: each block that holds a proof transaction or the definition, whole (header fields, every
  envelope, the orderer's signed metadata value and signatures). Unsigned peer-local metadata (validation
  flags, commit hash) is not copied; each proof transaction states its own validation code, from the
  block's TRANSACTIONS_FILTER, as the embedded bundle does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from fabric_protos.common import common_pb2

from hub.audit.fabric_tx import foreign_envelopes, parse_endorser_tx
from hub.ledger.base import TransactionRecord
from hub.ledger.fabric.blocks import BlockReader, last_config_index, orderer_metadata, validation_codes

LIFECYCLE = "_lifecycle"


class FabricProofError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def block_entry(block: common_pb2.Block) -> dict[str, Any]:
    header = block.header
    entry: dict[str, Any] = {"number": header.number}
    if header.number:
        entry["previous_hash"] = bytes(header.previous_hash).hex()
    entry["data_hash"] = bytes(header.data_hash).hex()
    entry["data"] = [_b64(d) for d in block.data.data]
    md = orderer_metadata(block)
    if header.number:
        entry["orderer_metadata"] = _b64(md.value)
        entry["orderer_signatures"] = [
            {"header": _b64(s.signature_header), "signature": _b64(s.signature)} for s in md.signatures
        ]
    return entry


def writes_of(record: TransactionRecord) -> dict[str, bytes | None]:
    """The chaincode namespace's writes of a Fabric transaction record (from its envelope bytes)."""
    tx = parse_endorser_tx(record.raw["envelope"])
    ns = tx.rwset.get(tx.chaincode)
    return dict(ns.writes) if ns else {}


def fabric_parts(
    fetch_block: Callable[[int], Any],
    records: list[TransactionRecord],
    contract_id: str,
    devices: list[str],
    *,
    disclose_block_neighbours: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(ledger section, transactions, blocks) of a Fabric bundle for `records` (in ledger order);
    blocks that also hold other contracts' transactions are refused unless `disclose_block_neighbours`."""
    read = BlockReader(fetch_block)
    involved = sorted({r.block for r in records})
    first = parse_endorser_tx(records[0].raw["envelope"])
    sequence = first.rwset.get(LIFECYCLE)
    version = sequence.reads.get(f"namespaces/fields/{first.chaincode}/Sequence") if sequence else None
    if version is None:
        raise FabricProofError("proof_unsupported", "the transactions name no chaincode definition read")
    def_block, def_index = version
    def_status = validation_codes(read(def_block))[def_index]
    transactions = []
    proof = set()
    for rec in records:
        status = validation_codes(read(rec.block))[rec.index]
        transactions.append(
            {
                "tx_id": rec.tx_id,
                "block": rec.block,
                "index": rec.index,
                "status": status,
                "function": rec.function,
            }
        )
        proof.add((rec.block, rec.index))
    neighbours = foreign_envelopes(
        ((n, read(n).data.data) for n in involved), proof, first.chaincode, contract_id, devices
    )
    if neighbours and not disclose_block_neighbours:
        (number, _index), (tx_id, (finding, *_)) = next(iter(neighbours.items()))
        raise FabricProofError(
            "proof_discloses_other_contracts",
            f"block {number} also holds transaction {tx_id} that {finding}; Fabric's data_hash covers every "
            "envelope of a block, so the proof cannot ship it without disclosing that (ADR 0028, ADR 0034)",
        )
    numbers = sorted(set(involved) | {def_block})
    config_number, updates = config_chain(read, numbers)
    ledger = {
        "kind": "fabric",
        "network_id": "",  # filled by the caller (the channel)
        "config": block_entry(read(config_number)),
        "chaincode": {"name": first.chaincode, "block": def_block, "index": def_index, "status": def_status},
    }
    if updates:  # the configuration changed between the proof's blocks (ADR 0057)
        ledger["config_updates"] = [block_entry(read(n)) for n in updates]
    if neighbours:  # said, so the verifier can tell a disclosure the reader may see from a leak
        ledger["disclosed_neighbours"] = [list(position) for position in sorted(neighbours)]
    skip = {config_number, *updates}
    return ledger, transactions, [block_entry(read(n)) for n in numbers if n not in skip]


def config_chain(read: Callable[[int], common_pb2.Block], numbers: list[int]) -> tuple[int, list[int]]:
    """(anchor, later config blocks): the config governing the first of `numbers` and every config block
    after it up to the one governing the last (each config block names itself as last config, the block
    before it names its predecessor), ascending."""
    configs = {n: last_config_index(read(n)) for n in numbers}
    anchor, latest = configs[numbers[0]], max(configs.values())
    chain: list[int] = []
    number = latest
    while number > anchor:
        chain.append(number)
        number = last_config_index(read(number - 1))
    if number != anchor:
        raise FabricProofError("proof_unsupported", f"the config blocks do not chain back to block {anchor}")
    return anchor, sorted(chain)
