"""Verification of a whole embedded ledger: is the chain what its signatures and hashes say it is?

Checks, for every block: the header hash, the link to the previous header, the data hash over the stored
envelopes, the stored transaction ids; then replays every transaction from genesis through the same
validator the committer uses (creator and endorsement signatures against the org root certificates of the
genesis block, endorsement policies, MVCC), requiring the same validation code as stored; finally the
state rebuilt from the valid write sets must equal the current world state. Every failure names its block
and, where it has one, its transaction. It reads only stored bytes. `EmbeddedLedger.verify()` runs it.

One transaction, offline, is proven by the audit proof bundle (`hub.audit.proof` / `hub.audit.verify`,
ADR 0019); the per-transaction "ledgerhub-embedded-proof/1" format that used to live here is gone
(ADR 0058).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hub.ledger.base import VerifyProblem as Problem
from hub.ledger.base import VerifyReport as Report

from .blocks import GENESIS_PREVIOUS, GenesisConfig, Header, data_hash
from .codec import DecodeError, loads, sha256
from .identity import TrustStore
from .rwset import Entry
from .store import BlockWrite, StateReader, Store
from .transaction import ParsedTx
from .validator import BlockValidator

if TYPE_CHECKING:
    from .ledger import EmbeddedLedger

__all__ = ["Problem", "Report", "verify_ledger"]

MAX_STATE_PROBLEMS = 50


def verify_ledger(ledger: EmbeddedLedger) -> Report:
    """Verify the embedded `ledger` (other ledgers: `Ledger.verify`, which says where it is unsupported)."""
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
