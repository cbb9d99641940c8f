"""Offline verification of a Fabric proof bundle (`"ledger": {"kind": "fabric"}`, ADR 0034).

Trust runs from the channel's config block (its header hash is the anchor an auditor pins out of band):
config block -> MSP roots and policies -> every shipped block's orderer signatures satisfy
/Channel/Orderer/BlockValidation and name that config block as their last config (headers of consecutive
blocks also link by previous_hash) -> each block's data_hash covers its envelopes -> the chaincode
definition (the `_lifecycle` commit, endorsed per /Channel/Application/LifecycleEndorsement) gives the
endorsement policy -> each proof transaction: creator signature, tx id, proposal hash, endorsements by
certificates of the MSPs, the chaincode policy or the key-level policy (VALIDATION_PARAMETER) an earlier
proof transaction set, the definition it ran under (its `_lifecycle` Sequence read), validation code VALID
-> its write set -> `hub.audit.evidence` (records, device signatures, the invoice recomputed).

Nothing here opens a connection or a ledger: the inputs are the bundle's bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fabric_protos.common import policies_pb2
from fabric_protos.peer import policy_pb2
from fabric_protos.peer.lifecycle import chaincode_definition_pb2, db_pb2

from hub.audit.fabric_chain import VALID, Bad, Block, blocks_of, config_of
from hub.audit.fabric_config import TrustChain, config_chain
from hub.audit.fabric_msp import ChannelTrust, Identity, TrustError
from hub.audit.fabric_tx import (
    FabricTx,
    NotEndorserTx,
    RangeRead,
    foreign_envelopes,
    merkle_summary,
    parse_endorser_tx,
)
from hub.audit.report import VerificationReport, short
from hub.audit.verify import Context, VerifiedTx, unexpected

LIFECYCLE = "_lifecycle"
VALIDATION_PARAMETER = "VALIDATION_PARAMETER"
LIFECYCLE_ENDORSEMENT = "/Channel/Application/LifecycleEndorsement"


def verify_fabric(
    bundle: Mapping[str, Any], ledger: Mapping[str, Any], report: VerificationReport, anchor: str | None
) -> None:
    ctx = Context(report)
    found = config_of(ledger, report)
    if found is None:
        return
    trust, config = found
    if anchor is not None and anchor.lower() != report.genesis_hash:
        report.fail(
            "genesis",
            "anchor",
            f"config block hash {report.genesis_hash} is not the expected "
            f"{anchor.lower()}: the bundle comes from another network or configuration",
        )
    chain, updates = config_chain(ledger.get("config_updates"), config, trust, report)  # ADR 0057
    blocks = blocks_of(bundle.get("blocks"), config, trust, report, at=chain.at, updates=updates)
    cc = ledger.get("chaincode")
    policy, definition = _definition(cc, blocks, chain, report)
    _transactions(bundle.get("transactions"), blocks, chain, policy, definition, cc, ctx)
    _resolve_hashed_ranges(ctx)
    _other_envelopes(bundle, blocks, definition, ctx)
    from hub.audit.evidence import check_evidence

    check_evidence(bundle, ctx)


def _endorsers(tx: FabricTx, part: str, trust: ChannelTrust, report: VerificationReport) -> list[Identity]:
    valid: list[Identity] = []
    for endorser, signature in tx.endorsements:
        report.count("endorsement signatures")
        try:
            ident = trust.identity(endorser)
        except TrustError as exc:
            report.fail(f"endorsement on {part}", "certificate", str(exc))
            continue
        who = f"endorsement by {ident.msp_id} on {part}"
        if not trust.verify(ident, signature, tx.prp + endorser):
            report.fail(who, "endorsement", "bad signature")
            continue
        valid.append(ident)
    return valid


def _creator(tx: FabricTx, part: str, trust: ChannelTrust, report: VerificationReport) -> bool:
    report.count("creator signatures")
    try:
        ident = trust.identity(tx.creator)
    except TrustError as exc:
        report.fail(f"creator of {part}", "certificate", str(exc))
        return False
    if not trust.verify(ident, tx.signature, tx.payload):
        report.fail(f"creator {ident.msp_id} of {part}", "creator", "bad signature")
        return False
    return True


def _common(tx: FabricTx, part: str, trust: ChannelTrust, report: VerificationReport) -> bool:
    ok = _creator(tx, part, trust, report)
    if tx.computed_tx_id != tx.tx_id:
        report.fail(part, "tx_id", "tx id is not SHA-256(nonce ‖ creator)")
        ok = False
    if tx.channel != report.network_id:
        report.fail(part, "network", f"proposed on channel {tx.channel!r}")
        ok = False
    if tx.proposal_hash != tx.signed_proposal_hash or not 200 <= tx.status < 400:
        report.fail(part, "response", "endorsed response does not belong to the proposal or is not a success")
        ok = False
    return ok


def _definition(
    cc: Any, blocks: dict[int, Block], chain: TrustChain, report: VerificationReport
) -> tuple[policies_pb2.SignaturePolicyEnvelope | str | None, tuple[str, int, int] | None]:
    """The chaincode definition's endorsement policy, from the `_lifecycle` commit transaction."""
    part = "chaincode definition"
    try:
        if not isinstance(cc, Mapping):
            raise Bad("ledger.chaincode must name the chaincode and its definition transaction")
        unexpected(report, part, "fabric chaincode", cc)
        name, number, index = cc.get("name"), cc.get("block"), cc.get("index")
        if not isinstance(name, str) or not isinstance(number, int) or not isinstance(index, int):
            raise Bad("name, block and index are required")
        block = blocks.get(number)
        if block is None or not 0 <= index < len(block.data) or not block.signed:
            raise Bad(f"block {number} of the bundle holds no signed transaction at index {index}")
        tx = parse_endorser_tx(block.data[index])
        status = cc.get("status")
        trust = chain.at(number)[1]
    except (Bad, NotEndorserTx) as exc:
        report.fail(part, "format", str(exc))
        return None, None
    except Exception as exc:  # protobuf DecodeError
        report.fail(part, "format", f"unreadable: {type(exc).__name__}: {exc}")
        return None, None
    report.count("chaincode definition")
    ok = _common(tx, part, trust, report)
    if status != VALID:
        report.fail(part, "validation", f"committed as {status}: only VALID transactions count")
        ok = False
    if tx.chaincode != LIFECYCLE or tx.fn != "CommitChaincodeDefinition":
        report.fail(part, "not_written", f"tx {short(tx.tx_id)} is not a chaincode definition commit")
        return None, None
    if not trust.policy(LIFECYCLE_ENDORSEMENT, _endorsers(tx, part, trust, report)):
        report.fail(part, "policy", f"not endorsed as {LIFECYCLE_ENDORSEMENT} requires")
        ok = False
    writes = tx.rwset.get(LIFECYCLE)
    raw = writes.writes.get(f"namespaces/fields/{name}/ValidationInfo") if writes else None
    if raw is None:
        report.fail(part, "not_written", f"tx {short(tx.tx_id)} does not define chaincode {name}")
        return None, None
    info = chaincode_definition_pb2.ChaincodeValidationInfo.FromString(db_pb2.StateData.FromString(raw).Bytes)
    app = policy_pb2.ApplicationPolicy.FromString(info.validation_parameter)
    which = app.WhichOneof("Type")
    policy: policies_pb2.SignaturePolicyEnvelope | str | None
    policy = (
        app.signature_policy if which == "signature_policy" else app.channel_config_policy_reference or None
    )
    if info.validation_plugin != "vscc" or policy is None:
        report.fail(
            part, "policy", f"validation {info.validation_plugin!r} with no policy this verifier evaluates"
        )
        return None, None
    return (policy if ok else None), (name, number, index)


def _satisfied(
    trust: ChannelTrust, policy: policies_pb2.SignaturePolicyEnvelope | str, ids: list[Identity]
) -> bool:
    if isinstance(policy, str):
        return trust.policy(policy, ids)
    return trust.signature_policy(policy, ids)


def _transactions(
    entries: Any,
    blocks: dict[int, Block],
    chain: TrustChain,
    policy: Any,
    definition: tuple[str, int, int] | None,
    cc: Any,
    ctx: Context,
) -> None:
    report = ctx.report
    if not isinstance(entries, list):
        report.fail("transactions", "format", "transactions must be a list")
        return
    key_policies: dict[str, tuple[bytes, str]] = {}  # key -> (SignaturePolicyEnvelope, setting tx)
    seen: set[tuple[int, int]] = set()
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tx_id"), str):
            report.fail("transactions", "format", "a transaction entry has no tx_id")
            continue
        tx_id = entry["tx_id"]
        part = f"tx {short(tx_id)}"
        if tx_id in ctx.txs:
            report.fail(part, "format", "listed twice")
            continue
        unexpected(report, part, "fabric transaction", entry)
        number, index = entry.get("block"), entry.get("index")
        block = blocks.get(number) if isinstance(number, int) else None
        if block is None or not isinstance(index, int) or not 0 <= index < len(block.data):
            report.fail(
                part, "inclusion", f"block {number} of the bundle lists no transaction at index {index}"
            )
            continue
        if (number, index) in seen or (number, index) <= max(seen, default=(-1, -1)):
            report.fail(part, "format", "transactions must be listed in ledger order, each once")
        seen.add((number, index))
        try:
            tx = parse_endorser_tx(block.data[index])
        except Exception as exc:  # protobuf DecodeError, NotEndorserTx
            report.fail(part, "envelope", f"envelope unreadable: {exc}")
            continue
        report.count("transactions")
        trust = chain.at(number)[1]  # the config in force at its block (ADR 0057)
        ok = _common(tx, part, trust, report) and block.signed
        if tx.tx_id != tx_id:
            report.fail(part, "tx_id", f"envelope carries tx id {short(tx.tx_id)}")
            ok = False
        if entry.get("status") != VALID:
            report.fail(
                part, "validation", f"committed as {entry.get('status')}: only VALID transactions count"
            )
            ok = False
        if tx.fn != entry.get("function"):
            report.fail(part, "function", f"envelope calls {tx.fn}, bundle says {entry.get('function')}")
            ok = False
        name = definition[0] if definition else None
        if tx.chaincode != name:
            report.fail(part, "chaincode", f"invokes {tx.chaincode!r}, not the defined chaincode {name!r}")
            ok = False
        ns = tx.rwset.get(name or "")
        lifecycle = tx.rwset.get(LIFECYCLE)
        ran_under = lifecycle.reads.get(f"namespaces/fields/{name}/Sequence") if lifecycle else None
        if definition is None or ran_under != definition[1:]:
            report.fail(
                part,
                "definition",
                f"ran under the chaincode definition at {ran_under}, "
                f"not the bundle's ({definition[1:] if definition else None})",
            )
            ok = False
        endorsers = _endorsers(tx, part, trust, report)
        ok &= _policies(tx, part, ns, endorsers, policy, key_policies, trust, report)
        ctx.txs[tx_id] = VerifiedTx(
            tx_id,
            number,
            index,
            tx.fn,
            tx.creator_msp,
            tx.timestamp,
            dict(ns.writes) if ns else {},
            list(ns.ranges) if ns else [],
            {i.msp_id for i in endorsers},
            ok,
            list(tx.args),
        )
        for key, meta in ns.metadata.items() if ns and ok else ():
            if VALIDATION_PARAMETER in meta:
                key_policies[key] = (meta[VALIDATION_PARAMETER], tx_id)


def _policies(
    tx: FabricTx,
    part: str,
    ns: Any,
    endorsers: list[Identity],
    policy: Any,
    key_policies: dict[str, tuple[bytes, str]],
    trust: ChannelTrust,
    report: VerificationReport,
) -> bool:
    """Each written key (value or metadata) under its key-level policy if an earlier proof transaction set
    one, else under the chaincode's; a transaction that writes nothing under the chaincode's."""
    if policy is None:
        report.fail(part, "policy", "no verified chaincode endorsement policy to check it against")
        return False
    keys = sorted(set(ns.writes) | set(ns.metadata)) if ns else []
    ok = True
    needs_chaincode_policy = not keys
    for key in keys:
        if key in key_policies:
            raw, setter = key_policies[key]
            envelope = policies_pb2.SignaturePolicyEnvelope.FromString(raw)
            if not trust.signature_policy(envelope, endorsers):
                report.fail(
                    part,
                    "key_policy",
                    f"endorsements do not satisfy the key-level policy tx "
                    f"{short(setter)} set on {key.strip(chr(0)).replace(chr(0), '~')}",
                )
                ok = False
        else:
            needs_chaincode_policy = True
    if needs_chaincode_policy and not _satisfied(trust, policy, endorsers):
        report.fail(part, "policy", "endorsements do not satisfy the chaincode's endorsement policy")
        ok = False
    return ok


def _other_envelopes(
    bundle: Mapping[str, Any], blocks: dict[int, Block], definition: tuple[str, int, int] | None, ctx: Context
) -> None:
    """Whole blocks ship every envelope (data_hash covers them all): none may carry another contract's data
    (ADR 0028). The proof's own transactions are checked by `hub.audit.evidence`."""
    contract = bundle.get("contract") if isinstance(bundle.get("contract"), Mapping) else {}
    cid, devices = str(contract.get("id")), {str(a) for a in contract.get("assets") or []}
    proof = {(t.block, t.index) for t in ctx.txs.values()}
    name = definition[0] if definition else ""
    declared = _declared_neighbours(bundle, ctx)
    found = foreign_envelopes(((n, b.data) for n, b in sorted(blocks.items())), proof, name, cid, devices)
    seen: set[tuple[int, int]] = set()
    for (number, index), (_tx_id, findings) in sorted(found.items()):
        if (number, index) in declared:
            seen.add((number, index))  # disclosed on purpose, to a reader of every contract (an auditor)
            ctx.report.count("disclosed neighbours")
            continue
        for finding in findings:
            ctx.report.fail(f"block {number}", "disclosure", f"transaction {index} {finding}")
    for number, index in sorted(declared - seen):
        ctx.report.fail(
            f"block {number}", "disclosure",
            f"envelope {index} is declared another contract's transaction but is not one in the bundle",
        )


def _declared_neighbours(bundle: Mapping[str, Any], ctx: Context) -> set[tuple[int, int]]:
    """`ledger.disclosed_neighbours`: the (block, index) of each other contract's envelope the builder
    shipped knowingly (ADR 0034). Every entry must name such an envelope, and every such envelope not
    named is a disclosure failure, so the list can neither hide a leak nor be padded unnoticed."""
    ledger = bundle.get("ledger") if isinstance(bundle.get("ledger"), Mapping) else {}
    raw = ledger.get("disclosed_neighbours", [])
    ok = isinstance(raw, list) and all(
        isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) for p in raw
    )
    if not ok or len({tuple(p) for p in raw}) != len(raw) or raw != sorted(raw):
        ctx.report.fail("ledger", "disclosure", "disclosed_neighbours is not a sorted list of [block, index]")
        return set()
    return {(p[0], p[1]) for p in raw}


def _resolve_hashed_ranges(ctx: Context) -> None:
    """A range read Fabric summarised as Merkle hashes (more than 50 results, e.g. a period's usage batches)
    names its keys only through the summary. The candidates are the keys the bundle's earlier transactions
    wrote in that range, each at the version of its last writer; if they reproduce the summary exactly,
    they are the range's results (and `hub.audit.evidence` checks completeness against them as for a
    listed range); if not, the bundle does not hold what the transaction read."""
    order = sorted(ctx.txs.values(), key=lambda t: (t.block, t.index))
    for tx in order:
        for i, rr in enumerate(tx.ranges):
            if not isinstance(rr, RangeRead) or rr.merkle is None:
                continue
            found: dict[str, tuple[int, int]] = {}
            for other in order:
                if (other.block, other.index) >= (tx.block, tx.index):
                    break
                for key, value in other.writes.items():
                    if rr.start <= key < rr.end:
                        if value is None:
                            found.pop(key, None)
                        else:
                            found[key] = (other.block, other.index)
            rows: list[tuple[str, tuple[int, int] | None]] = sorted(found.items())
            max_degree, max_level, hashes = rr.merkle
            ctx.report.count("range read summaries")
            if max_degree < 2 or merkle_summary(rows, max_degree) != (max_level, hashes):
                ctx.report.fail(
                    f"tx {short(tx.tx_id)}",
                    "completeness",
                    f"the {len(rows)} keys the bundle's transactions wrote in its range read do not "
                    "reproduce the read's Merkle summary: the bundle lacks what the transaction read",
                )
                continue
            tx.ranges[i] = RangeRead(rr.start, rr.end, rows)
