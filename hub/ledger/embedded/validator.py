"""Validation of an ordered block, transaction by transaction, as a Fabric committing peer does it.

For each transaction in order: well-formed envelope, right network, tx id = SHA-256(nonce ‖ creator),
not a duplicate, creator signature by an identity of its org, endorsements over the very response bytes,
endorsement policy (chaincode and key-level, as committed before this transaction, including earlier
valid transactions of the same block), then MVCC: every key read and every range scanned must still have
the versions seen at simulation. Invalid transactions stay in the block with their code and change
nothing. The same code replays a whole chain in `hub.ledger.embedded.verify`, so commit and audit cannot
disagree.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from chaincode.stub import KeyModification

from .codec import DecodeError, sha256
from .endorsement import policy_satisfied
from .identity import TrustStore
from .rwset import Entry, RangeRead
from .simulator import Reader
from .store import BlockWrite
from .transaction import ParsedTx, make_tx_id

VALID = "VALID"


class Overlay:
    """Committed state plus the updates of earlier valid transactions of the block being validated."""

    def __init__(self, base: Reader) -> None:
        self.base = base
        self.pending: dict[str, Entry | None] = {}

    def get(self, key: str) -> Entry | None:
        if key in self.pending:
            return self.pending[key]
        return self.base.get(key)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        rest = [k for k in keys if k not in self.pending]
        fetched = dict(zip(rest, self.base.get_many(rest), strict=True)) if rest else {}
        return [self.pending[k] if k in self.pending else fetched[k] for k in keys]

    def range(self, start: str, end: str) -> Iterator[tuple[str, Entry]]:
        local = sorted(k for k in self.pending if k >= start and (not end or k < end))
        if not local:
            yield from self.base.range(start, end)
            return
        # merge: pending entries (priority 0) override committed ones (priority 1) with the same key
        merged = heapq.merge(
            ((k, 0, self.pending[k]) for k in local),
            ((k, 1, e) for k, e in self.base.range(start, end)),
            key=lambda item: (item[0], item[1]),
        )
        last: str | None = None
        for key, _prio, entry in merged:
            if key == last:
                continue
            last = key
            if entry is not None:
                yield key, entry

    def history(self, key: str) -> Iterator[KeyModification]:
        return self.base.history(key)


@dataclass
class Outcome:
    idx: int
    tx_id: str
    status: str
    reason: str
    tx: ParsedTx | None
    # committed entries of the keys the transaction writes, fetched once for policy check and apply
    written: dict[str, Entry | None] = field(default_factory=dict, repr=False)


class BlockValidator:
    def __init__(self, network_id: str, trust: TrustStore, chaincode_orgs: Sequence[str]) -> None:
        self.network_id = network_id
        self.trust = trust
        self.chaincode_orgs = tuple(chaincode_orgs)

    def validate_block(
        self,
        number: int,
        envelopes: Sequence[bytes],
        base: Reader,
        seen: Callable[[str], bool],
        bw: BlockWrite,
    ) -> list[Outcome]:
        """Validate and fill `bw` with the block's transactions and the changes of the valid ones."""
        view = Overlay(base)
        valid_in_block: set[str] = set()
        outcomes: list[Outcome] = []
        for idx, raw in enumerate(envelopes):
            out = self._check(idx, raw, view, seen, valid_in_block)
            outcomes.append(out)
            bw.txs.append((idx, out.tx_id, out.status, raw))
            if out.status == VALID and out.tx is not None:
                valid_in_block.add(out.tx_id)
                self._apply(number, idx, out.tx, out.written, view, bw)
        return outcomes

    def _check(
        self, idx: int, raw: bytes, view: Overlay, seen: Callable[[str], bool], valid_in_block: set[str]
    ) -> Outcome:
        try:
            tx = ParsedTx.parse(raw)
        except DecodeError as exc:
            return Outcome(idx, "unparsed-" + sha256(raw).hex(), "BAD_PAYLOAD", str(exc), None)
        prop, resp, env = tx.proposal, tx.response, tx.envelope
        tx_id = prop.tx_id

        def bad(status: str, reason: str) -> Outcome:
            return Outcome(idx, tx_id, status, reason, tx)

        if prop.channel != self.network_id:
            return bad("BAD_CHANNEL_HEADER", f"network {prop.channel!r} is not {self.network_id!r}")
        if make_tx_id(prop.nonce, prop.creator) != tx_id:
            return bad("BAD_PROPOSAL_TXID", "tx id is not SHA-256(nonce ‖ creator)")
        if not self.trust.verify(
            prop.creator_msp_id, prop.creator_cert, env.creator_signature, env.proposal_bytes
        ):
            return bad("BAD_CREATOR_SIGNATURE", f"creator signature of {prop.creator_msp_id} does not verify")
        if tx_id in valid_in_block or seen(tx_id):
            return bad("DUPLICATE_TXID", "a valid transaction with this id is already on the ledger")
        if not tx.proposal_hash_ok or resp.status != 200:
            return bad("BAD_RESPONSE_PAYLOAD", "response does not belong to the proposal or is not a success")
        endorsers: set[str] = set()
        for e in env.endorsements:
            if self.trust.verify(e.msp_id, e.cert, e.signature, env.response_bytes):
                endorsers.add(e.msp_id)
        rw = resp.rwset
        # one lookup for every key read or written (usage transactions read the keys they then write)
        keys = list(dict.fromkeys([*rw.reads, *rw.writes, *rw.metadata]))
        entries = dict(zip(keys, view.get_many(keys), strict=True))
        ok, reason = policy_satisfied(endorsers, rw, lambda k: _policy_of(entries, k), self.chaincode_orgs)
        if not ok:
            return bad("ENDORSEMENT_POLICY_FAILURE", reason)
        for key, seen_version in rw.reads.items():
            entry = entries[key]
            current = entry.version if entry else None
            if current != seen_version:
                return bad("MVCC_READ_CONFLICT", f"key {key!r} read at {seen_version}, now {current}")
        for scan in rw.ranges:
            if not _range_unchanged(view, scan):
                return bad("PHANTOM_READ_CONFLICT", f"range [{scan.start!r}, {scan.end!r}) changed")
        return Outcome(idx, tx_id, VALID, "", tx, entries)

    @staticmethod
    def _apply(
        number: int, idx: int, tx: ParsedTx, written: dict[str, Entry | None], view: Overlay, bw: BlockWrite
    ) -> None:
        version = (number, idx)
        rw = tx.response.rwset
        for key, value in rw.writes.items():
            if value is None:
                view.pending[key] = None
                bw.puts.pop(key, None)
                bw.deletes.add(key)
            else:
                prior = written[key]
                entry = Entry(value, version, prior.policy if prior else None)
                view.pending[key] = entry
                bw.deletes.discard(key)
                bw.puts[key] = (entry.value, number, idx, entry.policy)
            bw.history.append((key, number, idx))
        for key, orgs in rw.metadata.items():
            current = view.get(key)
            if current is None:
                continue  # a policy only lives with an existing key (as in Fabric's state database)
            entry = Entry(current.value, version, orgs)
            view.pending[key] = entry
            bw.deletes.discard(key)
            bw.puts[key] = (entry.value, number, idx, orgs)
        if tx.response.event is not None:
            name, payload = tx.response.event
            bw.events.append((idx, tx.proposal.tx_id, name, payload))


def _policy_of(entries: dict[str, Entry | None], key: str) -> tuple[str, ...] | None:
    entry = entries.get(key)
    return entry.policy if entry else None


def _range_unchanged(view: Overlay, scan: RangeRead) -> bool:
    if not scan.exhausted and not scan.results:
        return True
    last = scan.results[-1][0] if scan.results else None
    current: list[tuple[str, tuple[int, int] | None]] = []
    with closing(view.range(scan.start, scan.end)) as rows:  # no cursor may outlive the check
        for key, entry in rows:
            if not scan.exhausted and last is not None and key > last:
                break
            current.append((key, entry.version))
            if len(current) > len(scan.results):
                return False
    return current == scan.results
