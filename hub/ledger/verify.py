"""Verification of a whole embedded ledger: is the chain what its signatures and hashes say it is?

Checks, for every block: the header hash, the link to the previous header, the data hash over the stored
envelopes, the stored transaction ids; then replays every transaction from genesis through the same
validator the committer uses (creator and endorsement signatures against the org root certificates of the
genesis block, endorsement policies, MVCC), requiring the same validation code as stored; finally the
state rebuilt from the valid write sets must equal the current world state. Every failure names its block
and, where it has one, its transaction. It reads only stored bytes.

`transaction_proof` / `verify_transaction_proof` do the same for one transaction, offline: a JSON-ready
bundle (genesis configuration, header chain, the block's transaction hashes, the envelope) that an auditor
checks without the ledger.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.embedded.blocks import GENESIS_PREVIOUS, GenesisConfig, Header, data_hash
from hub.ledger.embedded.codec import DecodeError, b64d, b64e, loads, sha256
from hub.ledger.embedded.identity import TrustStore
from hub.ledger.embedded.rwset import Entry
from hub.ledger.embedded.store import BlockWrite, StateReader, Store
from hub.ledger.embedded.transaction import ParsedTx, make_tx_id
from hub.ledger.embedded.validator import BlockValidator

MAX_STATE_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    check: str  # block_hash, hash_link, block_number, data_hash, metadata, tx_id, validation, state, genesis
    block: int | None
    tx_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"block {self.block}" if self.block is not None else "ledger"
        if self.tx_id:
            where += f" tx {self.tx_id}"
        return f"{self.check} at {where}: {self.detail}"


@dataclass
class Report:
    network_id: str
    blocks: int = 0
    transactions: int = 0
    valid_transactions: int = 0
    state_keys: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def failed_blocks(self) -> list[int]:
        return sorted({p.block for p in self.problems if p.block is not None})

    def failed_txs(self) -> list[str]:
        return sorted({p.tx_id for p in self.problems if p.tx_id})

    def summary(self) -> str:
        head = (
            f"network {self.network_id}: {self.blocks} blocks, {self.transactions} transactions "
            f"({self.valid_transactions} valid), {self.state_keys} state keys: "
        )
        if self.ok:
            return head + "OK"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems)


def verify_ledger(ledger: Any) -> Report:
    """Verify `ledger` (an `EmbeddedLedger`; other ledgers are verified by their own network)."""
    if not isinstance(ledger, EmbeddedLedger):
        raise TypeError(f"verify_ledger checks the embedded ledger, not {type(ledger).__name__}")
    with tempfile.TemporaryDirectory(prefix="ledger-verify-") as tmp, ledger.snapshot() as live:
        replay = Store(Path(tmp) / "replay.sqlite", synchronous="OFF")
        try:
            return _verify(ledger, live, replay)
        finally:
            replay.close()


def _verify(ledger: EmbeddedLedger, live: StateReader, replay: Store) -> Report:
    store = ledger.store
    report = Report(network_id=ledger.network_id)
    problems = report.problems
    height = store.height()
    report.blocks = height
    genesis, previous_hash = _check_genesis(store, ledger.genesis, problems)
    validator = BlockValidator(genesis.network_id, TrustStore(genesis.orgs), genesis.chaincode_orgs)
    replay_conn = replay.conn()
    for number in range(1, height):
        row = store.block_row(number)
        if row is None:
            problems.append(Problem("block_number", number, None, "block missing"))
            continue
        header_bytes, stored_hash, metadata, _config = row
        txs = store.block_txs(number)
        envelopes = [env for _, _, _, env in txs]
        report.transactions += len(txs)
        try:
            header = Header.decode(header_bytes)
        except DecodeError as exc:
            problems.append(Problem("block_hash", number, None, f"header unreadable: {exc}"))
            header = None
        if sha256(header_bytes) != stored_hash:
            problems.append(Problem("block_hash", number, None, "stored hash is not SHA-256 of the header"))
        if header is not None:
            if header.number != number:
                problems.append(Problem("block_number", number, None, f"header says block {header.number}"))
            if header.previous_hash != previous_hash:
                problems.append(
                    Problem("hash_link", number, None, "previous_hash does not match block before")
                )
            if header.data_hash != data_hash(envelopes):
                problems.append(
                    Problem("data_hash", number, None, "stored transactions do not match data_hash")
                )
        previous_hash = sha256(header_bytes)
        _check_metadata(number, metadata, txs, problems)
        bw = BlockWrite(number=number, header=header_bytes, hash=stored_hash, metadata=metadata)
        outcomes = validator.validate_block(
            number, envelopes, StateReader(replay_conn), lambda t: replay.tx_seen(replay_conn, t), bw
        )
        for (_idx, stored_id, stored_status, env), out in zip(txs, outcomes, strict=True):
            _check_tx_id(number, stored_id, env, problems)
            if out.status != stored_status:
                problems.append(
                    Problem(
                        "validation",
                        number,
                        stored_id,
                        f"stored {stored_status}, replay {out.status}: {out.reason}",
                    )
                )
            if out.status == "VALID":
                report.valid_transactions += 1
        replay.write_block(replay_conn, bw)
    report.state_keys = _compare_state(live, StateReader(replay_conn), problems)
    return report


def _check_genesis(
    store: Store, loaded: GenesisConfig, problems: list[Problem]
) -> tuple[GenesisConfig, bytes]:
    row = store.block_row(0)
    if row is None:
        problems.append(Problem("genesis", 0, None, "genesis block missing"))
        return loaded, b""
    header_bytes, stored_hash, _meta, config = row
    genesis = loaded
    try:
        header = Header.decode(header_bytes)
        if header.number != 0 or header.previous_hash != GENESIS_PREVIOUS:
            problems.append(Problem("genesis", 0, None, "genesis header is not block 0"))
        if config is None or header.data_hash != data_hash([config]):
            problems.append(Problem("data_hash", 0, None, "genesis configuration does not match data_hash"))
        elif config is not None:
            genesis = GenesisConfig.decode(config)
    except DecodeError as exc:
        problems.append(Problem("genesis", 0, None, f"genesis unreadable: {exc}"))
    if sha256(header_bytes) != stored_hash:
        problems.append(Problem("block_hash", 0, None, "stored hash is not SHA-256 of the header"))
    if genesis != loaded:
        problems.append(
            Problem("genesis", 0, None, "genesis differs from the one the ledger was opened with")
        )
    return genesis, sha256(header_bytes)


def _check_metadata(number: int, metadata: bytes, txs: list, problems: list[Problem]) -> None:
    try:
        codes = loads(metadata)["validation"]
    except (DecodeError, KeyError, TypeError) as exc:
        problems.append(Problem("metadata", number, None, f"block metadata unreadable: {exc}"))
        return
    if codes != [status for _, _, status, _ in txs]:
        problems.append(
            Problem("metadata", number, None, "validation codes differ from the stored transactions")
        )


def _check_tx_id(number: int, stored_id: str, envelope: bytes, problems: list[Problem]) -> None:
    try:
        parsed_id = ParsedTx.parse(envelope).proposal.tx_id
    except DecodeError as exc:
        problems.append(Problem("tx_id", number, stored_id, f"envelope unreadable: {exc}"))
        return
    if parsed_id != stored_id:
        problems.append(Problem("tx_id", number, stored_id, f"envelope carries tx id {parsed_id}"))


def _compare_state(live: StateReader, rebuilt: StateReader, problems: list[Problem]) -> int:
    """Walk both states in key order; report keys that differ in value, version or policy."""
    count = 0
    reported = 0
    a_iter, b_iter = live.range("", ""), rebuilt.range("", "")
    a, b = next(a_iter, None), next(b_iter, None)
    while a is not None or b is not None:
        key: str
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            key, detail = a[0], "in current state, not produced by any valid transaction"
            a = next(a_iter, None)
            count += 1
        elif a is None or b[0] < a[0]:
            key, detail = b[0], "written by valid transactions, missing from current state"
            b = next(b_iter, None)
        else:
            key = a[0]
            detail = _entry_diff(a[1], b[1])
            a, b = next(a_iter, None), next(b_iter, None)
            count += 1
            if not detail:
                continue
        if reported < MAX_STATE_PROBLEMS:
            problems.append(Problem("state", None, None, f"key {key!r}: {detail}"))
        reported += 1
    if reported > MAX_STATE_PROBLEMS:
        problems.append(Problem("state", None, None, f"... {reported - MAX_STATE_PROBLEMS} more keys differ"))
    return count


def _entry_diff(current: Entry, rebuilt: Entry) -> str:
    if current.value != rebuilt.value:
        return "value differs from the replayed history"
    if current.version != rebuilt.version:
        return f"version {current.version} differs from replayed {rebuilt.version}"
    if current.policy != rebuilt.policy:
        return f"endorsement policy {current.policy} differs from replayed {rebuilt.policy}"
    return ""


# --- one transaction, offline (audit proof bundles) ------------------------------------------------


def transaction_proof(ledger: EmbeddedLedger, tx_id: str) -> dict[str, Any]:
    """Everything needed to check one transaction offline, as JSON-ready values (hex / base64 text):
    the genesis block (network id and org roots), every block header from genesis to the transaction's
    block (the hash chain that binds that block to genesis), the block's transaction hashes, the
    transaction's envelope and its validation code."""
    rec = ledger.tx(tx_id)
    genesis = ledger.block(0)
    headers = [b64e(ledger.block(n).raw["header"]) for n in range(rec.block + 1)]
    blk = ledger.block(rec.block)
    return {
        "format": "ledgerhub-embedded-proof/1",
        "network_id": ledger.network_id,
        "tx_id": rec.tx_id,
        "block": rec.block,
        "index": rec.index,
        "status": rec.status,
        "genesis_config": b64e(genesis.raw["config"]),
        "headers": headers,
        "tx_hashes": [h.hex() for h in blk.raw["tx_hashes"]],
        "envelope": b64e(rec.raw["envelope"]),
    }


def verify_transaction_proof(proof: Mapping[str, Any], *, genesis_hash: bytes | None = None) -> list[str]:
    """Check a `transaction_proof` without the ledger; returns the problems found (empty = verified).

    With `genesis_hash` (obtained from a trusted source, e.g. the org's own node), the proof is also
    anchored to that network; without it, the proof is only self-consistent."""
    problems: list[str] = []
    try:
        config = b64d(proof["genesis_config"])
        headers = [b64d(h) for h in proof["headers"]]
        envelope = b64d(proof["envelope"])
        tx_hashes = [bytes.fromhex(h) for h in proof["tx_hashes"]]
        block, index = int(proof["block"]), int(proof["index"])
        genesis = GenesisConfig.decode(config)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"proof unreadable: {exc}"]
    parsed: list[Header] = []
    for n, raw in enumerate(headers):
        try:
            parsed.append(Header.decode(raw))
        except DecodeError as exc:
            return [f"header of block {n} unreadable: {exc}"]
    if len(headers) != block + 1:
        problems.append(f"expected {block + 1} headers, got {len(headers)}")
        return problems
    if genesis_hash is not None and sha256(headers[0]) != genesis_hash:
        problems.append("genesis block is not the trusted one")
    if parsed[0].data_hash != data_hash([config]):
        problems.append("genesis configuration does not match the genesis header")
    for n in range(1, len(parsed)):
        if parsed[n].number != n or parsed[n].previous_hash != sha256(headers[n - 1]):
            problems.append(f"header chain broken at block {n}")
    if parsed[block].data_hash != data_hash_of_hashes(tx_hashes):
        problems.append(f"transaction hashes do not match block {block}'s data_hash")
    if not 0 <= index < len(tx_hashes) or tx_hashes[index] != sha256(envelope):
        problems.append(f"envelope is not transaction {index} of block {block}")
    problems.extend(_check_envelope(envelope, genesis, str(proof.get("tx_id", ""))))
    return problems


def data_hash_of_hashes(tx_hashes: Sequence[bytes]) -> bytes:
    """`blocks.data_hash` computed from the transaction hashes alone (what a proof carries)."""
    return sha256(b"".join(tx_hashes))


def _check_envelope(envelope: bytes, genesis: GenesisConfig, tx_id: str) -> list[str]:
    try:
        tx = ParsedTx.parse(envelope)
    except DecodeError as exc:
        return [f"envelope unreadable: {exc}"]
    prop, env = tx.proposal, tx.envelope
    trust = TrustStore(genesis.orgs)
    problems = []
    if tx_id and prop.tx_id != tx_id:
        problems.append(f"envelope is transaction {prop.tx_id}, not {tx_id}")
    if prop.channel != genesis.network_id:
        problems.append(f"proposal is for network {prop.channel!r}")
    if make_tx_id(prop.nonce, prop.creator) != prop.tx_id:
        problems.append("tx id is not SHA-256(nonce ‖ creator)")
    if not trust.verify(prop.creator_msp_id, prop.creator_cert, env.creator_signature, env.proposal_bytes):
        problems.append(f"creator signature of {prop.creator_msp_id} does not verify")
    if not tx.proposal_hash_ok:
        problems.append("response does not belong to the proposal")
    for e in env.endorsements:
        if not trust.verify(e.msp_id, e.cert, e.signature, env.response_bytes):
            problems.append(f"endorsement of {e.msp_id} does not verify")
    if not env.endorsements:
        problems.append("no endorsements")
    return problems
