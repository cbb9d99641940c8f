"""One Fabric endorser transaction, decoded from its exact `common.Envelope` bytes (no network, no ledger).

What the Fabric proof verifier needs from it, with the bytes each signature covers:
creator and signature (over `Envelope.payload`), tx id (= hex SHA-256(nonce ‖ creator)), channel, time,
the proposal hash (SHA-256 of channel header ‖ signature header ‖ chaincode proposal payload, as
protoutil.GetProposalHash2) and the one the endorsers signed, endorsements (each over
`ProposalResponsePayload ‖ endorser`), the chaincode's response, function and arguments, and the
read-write set per namespace (reads with versions, range reads, writes, key metadata writes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError

Version = tuple[int, int]  # (block number, transaction index): what Fabric records for a read


@dataclass(frozen=True)
class RangeRead:
    """A range query of the simulation: [start, end) and the keys it returned, with versions."""

    start: str
    end: str
    results: list[tuple[str, Version | None]]
    # more than `max_degree` (50) results: Fabric records a Merkle summary (max_degree, max_level, hashes)
    # of them instead of the list (kvledger rwsetutil.RangeQueryResultsHelper); see `merkle_summary`
    merkle: tuple[int, int, list[bytes]] | None = None

    @property
    def hashed(self) -> bool:
        return self.merkle is not None


@dataclass
class NsRwSet:
    reads: dict[str, Version | None] = field(default_factory=dict)
    ranges: list[RangeRead] = field(default_factory=list)
    writes: dict[str, bytes | None] = field(default_factory=dict)
    metadata: dict[str, dict[str, bytes]] = field(default_factory=dict)  # key -> {metakey: value}


@dataclass
class FabricTx:
    envelope: bytes
    payload: bytes
    signature: bytes
    tx_type: int
    channel: str
    tx_id: str
    timestamp: dt.datetime
    creator: bytes  # SerializedIdentity bytes
    creator_msp: str
    nonce: bytes
    proposal_hash: bytes  # computed from the transaction's headers and proposal payload
    signed_proposal_hash: bytes  # what the endorsers' ProposalResponsePayload says
    prp: bytes  # ProposalResponsePayload bytes (what endorsers sign, with their identity appended)
    endorsements: list[tuple[bytes, bytes]]  # (endorser SerializedIdentity, signature)
    chaincode: str
    status: int
    response: bytes
    fn: str
    args: list[bytes]
    rwset: dict[str, NsRwSet]

    @property
    def computed_tx_id(self) -> str:
        return hashlib.sha256(self.nonce + self.creator).hexdigest()


class NotEndorserTx(ValueError):
    pass


UNREADABLE = (ValueError, DecodeError)  # what decoding a malformed envelope raises


def _version(v: kv_rwset_pb2.Version, present: bool) -> Version | None:
    return (v.block_num, v.tx_num) if present else None


def _rwset(results: bytes) -> dict[str, NsRwSet]:
    out: dict[str, NsRwSet] = {}
    for ns in rwset_pb2.TxReadWriteSet.FromString(results).ns_rwset:
        kv = kv_rwset_pb2.KVRWSet.FromString(ns.rwset)
        entry = out.setdefault(ns.namespace, NsRwSet())
        for r in kv.reads:
            entry.reads[r.key] = _version(r.version, r.HasField("version"))
        for q in kv.range_queries_info:
            hashed = q.WhichOneof("reads_info") == "reads_merkle_hashes"
            rows = (
                []
                if hashed
                else [(r.key, _version(r.version, r.HasField("version"))) for r in q.raw_reads.kv_reads]
            )
            summary = q.reads_merkle_hashes
            merkle = (
                (summary.max_degree, summary.max_level, list(summary.max_level_hashes)) if hashed else None
            )
            entry.ranges.append(RangeRead(q.start_key, q.end_key, rows, merkle))
        for w in kv.writes:
            entry.writes[w.key] = None if w.is_delete else bytes(w.value)
        for m in kv.metadata_writes:
            entry.metadata[m.key] = {e.name: bytes(e.value) for e in m.entries}
    return out


def parse_endorser_tx(envelope_bytes: bytes) -> FabricTx:
    """Decode an ENDORSER_TRANSACTION envelope; ValueError (or protobuf DecodeError) when unreadable."""
    env = common_pb2.Envelope.FromString(envelope_bytes)
    payload = common_pb2.Payload.FromString(env.payload)
    ch = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    if ch.type != common_pb2.ENDORSER_TRANSACTION:
        raise NotEndorserTx(f"transaction type {ch.type} is not an endorser transaction")
    sh = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    creator = identities_pb2.SerializedIdentity.FromString(sh.creator)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    if len(tx.actions) != 1:
        raise ValueError(f"{len(tx.actions)} actions; a Fabric transaction carries exactly one")
    cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    prp = proposal_response_pb2.ProposalResponsePayload.FromString(cap.action.proposal_response_payload)
    action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
    cpp = proposal_pb2.ChaincodeProposalPayload.FromString(cap.chaincode_proposal_payload)
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input)
    all_args = [bytes(a) for a in spec.chaincode_spec.input.args]
    digest = hashlib.sha256(
        bytes(payload.header.channel_header)
        + bytes(payload.header.signature_header)
        + bytes(cap.chaincode_proposal_payload)
    ).digest()
    ts = ch.timestamp
    when = dt.datetime.fromtimestamp(ts.seconds, dt.UTC) + dt.timedelta(microseconds=ts.nanos // 1000)
    return FabricTx(
        envelope=bytes(envelope_bytes),
        payload=bytes(env.payload),
        signature=bytes(env.signature),
        tx_type=ch.type,
        channel=ch.channel_id,
        tx_id=ch.tx_id,
        timestamp=when,
        creator=bytes(sh.creator),
        creator_msp=creator.mspid,
        nonce=bytes(sh.nonce),
        proposal_hash=digest,
        signed_proposal_hash=bytes(prp.proposal_hash),
        prp=bytes(cap.action.proposal_response_payload),
        endorsements=[(bytes(e.endorser), bytes(e.signature)) for e in cap.action.endorsements],
        chaincode=action.chaincode_id.name,
        status=action.response.status,
        response=bytes(action.response.payload),
        fn=all_args[0].decode("utf-8", "replace") if all_args else "",
        args=all_args[1:],
        rwset=_rwset(action.results),
    )


def merkle_summary(rows: list[tuple[str, Version | None]], max_degree: int) -> tuple[int, list[bytes]]:
    """(max_level, max_level_hashes) Fabric records for range results `rows` (key order), as
    rwsetutil.RangeQueryResultsHelper with hashing on: chunks of max_degree + 1 KVReads, each hashed
    (SHA-256 of the QueryReads protobuf) into level 1; a level holding more than max_degree hashes is
    folded into one hash of their concatenation one level up; `done` folds the lower levels upward."""

    def kv(key: str, version: Version | None) -> kv_rwset_pb2.KVRead:
        read = kv_rwset_pb2.KVRead(key=key)
        if version is not None:
            read.version.CopyFrom(kv_rwset_pb2.Version(block_num=version[0], tx_num=version[1]))
        return read

    def sha(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    tree: dict[int, list[bytes]] = {}
    max_level = 1

    def update(leaf: bytes) -> None:
        nonlocal max_level
        tree.setdefault(1, []).append(leaf)
        level = 1
        while len(tree.get(level, [])) > max_degree:
            combined = sha(b"".join(tree.pop(level)))
            level += 1
            tree.setdefault(level, []).append(combined)
            max_level = max(max_level, level)

    pending: list[kv_rwset_pb2.KVRead] = []
    for key, version in rows:
        pending.append(kv(key, version))
        if len(pending) > max_degree:
            update(sha(kv_rwset_pb2.QueryReads(kv_reads=pending).SerializeToString()))
            pending = []
    if pending:
        update(sha(kv_rwset_pb2.QueryReads(kv_reads=pending).SerializeToString()))
    level = 1
    while level < max_level:
        hashes = tree.pop(level, [])
        if hashes:
            tree.setdefault(level + 1, []).append(hashes[0] if len(hashes) == 1 else sha(b"".join(hashes)))
        level += 1
    final = tree.get(max_level, [])
    if len(final) > max_degree:
        max_level += 1
        final = [sha(b"".join(final))]
    return max_level, final


def foreign_envelopes(
    blocks: Iterable[tuple[int, Sequence[bytes]]],
    proof: Collection[tuple[int, int]],
    chaincode: str,
    contract_id: str,
    devices: Collection[str],
) -> dict[tuple[int, int], tuple[str, list[str]]]:
    """A whole block ships every envelope (its data hash covers them all): (block, index) -> (tx id, what it
    carries that is not `contract_id`'s) for each envelope outside `proof` holding another contract's data.
    One scan for the builder (refuse, or declare to an auditor) and the verifier (ADR 0028, ADR 0034)."""
    from hub.audit.disclosure import foreign_data

    found: dict[tuple[int, int], tuple[str, list[str]]] = {}
    for number, envelopes in blocks:
        for index, env in enumerate(envelopes):
            if (number, index) in proof:
                continue
            try:
                tx = parse_endorser_tx(env)
            except UNREADABLE:  # config and other non-endorser envelopes carry no contract data
                continue
            ns = tx.rwset.get(chaincode)
            if tx.chaincode != chaincode or ns is None:
                continue
            findings = foreign_data(contract_id, set(devices), tx.fn, tx.args, ns.writes)
            if findings:
                found[(number, index)] = (tx.tx_id, findings)
    return found
