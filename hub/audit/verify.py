"""Offline verification of a proof bundle: `verify_bundle(bundle) -> VerificationReport`.

No network, no ledger: only the bundle's bytes and the same code the ledger and the chaincode run
(the embedded ledger's decoders and trust store, `chaincode.signature`, `chaincode.rating`). The chain of
trust is: the genesis block (its hash anchors the header chain, its configuration names each org's CA
certificates) -> block headers linked by hash -> each envelope's SHA-256 listed in its block's data hash
-> creator and endorsement signatures by certificates those CAs issued -> the write sets inside the
signed responses -> the records the bundle shows (invoice, contract, assets, messages, readings) ->
device signatures on the messages -> the invoice recomputed from the readings with the rating code.

Every check runs even after an earlier one failed, so one tampered byte is reported at every place it
shows (e.g. a changed quantity: the transaction that recorded it, the readings digest and the recomputed
amounts), each failure naming its part. This module checks the chain and the transactions; the records
and the arithmetic are in `hub.audit.evidence`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.audit.proof import FORMAT
from hub.audit.report import Failure, VerificationReport, short
from hub.ledger.embedded.blocks import GENESIS_PREVIOUS, GenesisConfig, Header, data_hash
from hub.ledger.embedded.codec import DecodeError, sha256
from hub.ledger.embedded.identity import TrustStore
from hub.ledger.embedded.transaction import ParsedTx, make_tx_id

__all__ = ["Failure", "VerificationReport", "VerifiedTx", "verify_bundle"]


@dataclass
class VerifiedTx:
    """A transaction of the bundle after its checks: what it wrote and which orgs validly endorsed it."""

    tx_id: str
    block: int
    index: int
    fn: str
    creator: str
    timestamp: dt.datetime
    writes: dict[str, bytes | None]
    ranges: list[Any]
    endorsers: set[str] = field(default_factory=set)
    ok: bool = True
    args: list[bytes] = field(default_factory=list)  # the proposal's arguments (what it discloses)


@dataclass
class Context:
    """What the chain checks hand to the evidence checks."""

    report: VerificationReport
    txs: dict[str, VerifiedTx] = field(default_factory=dict)
    chaincode_orgs: tuple[str, ...] = ()


def verify_bundle(bundle: Mapping[str, Any], *, genesis_hash: str | None = None) -> VerificationReport:
    """Check a proof bundle offline. Never raises on bad input: malformed parts are failures.

    A bundle is self-contained, so by itself it proves consistency with *some* network: the one whose
    genesis it carries. `genesis_hash` (hex, obtained out of band: from the operator, an earlier bundle,
    `GET /v1/audit/verify`) pins that anchor; without it the report names the genesis hash and the org CA
    fingerprints so the auditor can compare them."""
    report = VerificationReport()
    if not isinstance(bundle, Mapping):
        report.fail("bundle", "format", "not a JSON object")
        return report
    if bundle.get("format") != FORMAT:
        report.fail("bundle", "format", f"format is {bundle.get('format')!r}, expected {FORMAT!r}")
        return report
    invoice = bundle.get("invoice")
    report.invoice_id = invoice.get("id") if isinstance(invoice, Mapping) else None
    ledger = bundle.get("ledger")
    if isinstance(ledger, Mapping) and ledger.get("kind") == "fabric":
        report.network_id = str(ledger.get("network_id"))
        unexpected(report, "bundle", "bundle", bundle)
        unexpected(report, "ledger", "fabric ledger", ledger)
        try:
            from hub.audit.fabric_verify import verify_fabric  # ADR 0034

            verify_fabric(bundle, ledger, report, genesis_hash)
        except Exception as exc:  # a malformed bundle must yield a report, never a traceback
            report.fail(
                "bundle", "format", f"verification stopped on malformed input: {type(exc).__name__}: {exc}"
            )
        return report
    if not isinstance(ledger, Mapping) or ledger.get("kind") != "embedded":
        kind = ledger.get("kind") if isinstance(ledger, Mapping) else None
        report.fail("ledger", "unsupported", f"ledger kind {kind!r} cannot be verified offline by this tool")
        return report
    report.network_id = str(ledger.get("network_id"))
    unexpected(report, "bundle", "bundle", bundle)
    unexpected(report, "ledger", "ledger", ledger)
    try:
        _verify(bundle, ledger, report, genesis_hash)
    except Exception as exc:  # a malformed bundle must yield a report, never a traceback
        report.fail(
            "bundle", "format", f"verification stopped on malformed input: {type(exc).__name__}: {exc}"
        )
    return report


def _verify(
    bundle: Mapping[str, Any], ledger: Mapping[str, Any], report: VerificationReport, genesis_hash: str | None
) -> None:
    ctx = Context(report)
    trust = _genesis(ledger, report, ctx)
    if trust is None:
        return
    if genesis_hash is not None and genesis_hash.lower() != report.genesis_hash:
        report.fail(
            "genesis",
            "anchor",
            f"genesis hash {report.genesis_hash} is not the expected "
            f"{genesis_hash.lower()}: the bundle comes from another network",
        )
    block_hashes = _blocks(bundle.get("blocks"), ledger["genesis"], report)
    _transactions(bundle.get("transactions"), block_hashes, trust, ctx)
    from hub.audit.evidence import check_evidence  # evidence needs the chain's results

    check_evidence(bundle, ctx)


def _text(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a string")
    return value.encode("utf-8")


def _genesis(ledger: Mapping[str, Any], report: VerificationReport, ctx: Context) -> TrustStore | None:
    """The trust anchor: genesis header and configuration (org CA certificates, chaincode policy)."""
    genesis = ledger.get("genesis")
    try:
        if not isinstance(genesis, Mapping):
            raise DecodeError("genesis block missing")
        header_bytes = _text(genesis.get("header"), "genesis header")
        config_bytes = _text(genesis.get("config"), "genesis configuration")
        header = Header.decode(header_bytes)
        config = GenesisConfig.decode(config_bytes)
    except DecodeError as exc:
        report.fail("genesis", "genesis", f"unreadable: {exc}")
        return None
    report.count("genesis block")
    unexpected(report, "genesis", "genesis", genesis)
    report.genesis_hash = sha256(header_bytes).hex()
    if header.number != 0 or header.previous_hash != GENESIS_PREVIOUS:
        report.fail("genesis", "genesis", "header is not that of block 0")
    if sha256(header_bytes).hex() != genesis.get("hash"):
        report.fail("genesis", "block_hash", "stated hash is not SHA-256 of the genesis header")
    if header.data_hash != data_hash([config_bytes]):
        report.fail("genesis", "data_hash", "configuration (org CA certificates) does not match the header")
    if config.network_id != report.network_id:
        report.fail(
            "genesis",
            "network",
            f"genesis is network {config.network_id!r}, bundle says {report.network_id!r}",
        )
    ctx.chaincode_orgs = config.chaincode_orgs
    try:
        trust = TrustStore(config.orgs)
        report.org_cas = {org: [_fingerprint(p) for p in pems] for org, pems in sorted(config.orgs.items())}
        return trust
    except ValueError as exc:
        report.fail("genesis", "certificate", f"an org CA certificate is unreadable: {exc}")
        return None


Listed = list[str] | None  # a block's envelope hashes (None: a block the proof only links through)
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# every field of a bundle is checked; anything else is reported, so no byte goes unexamined
FIELDS = {
    "bundle": {
        "format",
        "ledger",
        "invoice",
        "contract",
        "assets",
        "messages",
        "readings",
        "transactions",
        "blocks",
    },
    "ledger": {"kind", "network_id", "genesis"},
    # Fabric bundles (ADR 0034): whole blocks, split into the header fields, the envelopes and the
    # orderer's signed metadata; transactions point into them
    "fabric ledger": {"kind", "network_id", "config", "config_updates", "chaincode", "disclosed_neighbours"},
    "fabric chaincode": {"name", "block", "index", "status"},
    "fabric block": {
        "number",
        "previous_hash",
        "data_hash",
        "data",
        "orderer_metadata",
        "orderer_signatures",
    },
    "fabric signature": {"header", "signature"},
    "fabric transaction": {"tx_id", "block", "index", "status", "function"},
    "genesis": {"header", "hash", "config"},
    "block": {"number", "header", "hash", "tx_hashes"},
    "transaction": {"tx_id", "block", "index", "status", "function", "envelope"},
    "message entry": {"message", "readings"},
}


def unexpected(report: VerificationReport, part: str, kind: str, obj: Mapping[str, Any]) -> None:
    extra = sorted(set(obj) - FIELDS[kind])
    if extra:
        report.fail(part, "format", f"unexpected field(s) {extra}: a bundle holds only checked evidence")


def _fingerprint(pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return sha256(der).hex()


def _blocks(blocks: Any, genesis: Mapping[str, Any], report: VerificationReport) -> dict[int, Listed]:
    """Walk the header chain from genesis; returns per block its listed envelope hashes."""
    out: dict[int, Listed] = {}
    if not isinstance(blocks, list):
        report.fail("blocks", "format", "blocks must be a list")
        return out
    previous = sha256(_text(genesis["header"], "genesis header"))
    for expected, entry in enumerate(blocks, start=1):
        part = f"block {expected}"
        try:
            if not isinstance(entry, Mapping) or entry.get("number") != expected:
                raise DecodeError(f"expected block {expected} here (the chain must be complete from genesis)")
            header_bytes = _text(entry.get("header"), "header")
            header = Header.decode(header_bytes)
        except DecodeError as exc:
            report.fail(part, "format", str(exc))
            previous = b""
            continue
        report.count("block headers")
        unexpected(report, part, "block", entry)
        own = sha256(header_bytes)
        if own.hex() != entry.get("hash"):
            report.fail(part, "block_hash", "stated hash is not SHA-256 of its header")
        if header.number != expected:
            report.fail(part, "block_number", f"header says block {header.number}")
        if header.previous_hash != previous:
            report.fail(part, "hash_link", f"header hash does not link to block {expected - 1}")
        previous = own
        hashes = entry.get("tx_hashes")
        if hashes is None:
            out[expected] = None
            continue
        if not isinstance(hashes, list) or not all(isinstance(h, str) and HEX64.match(h) for h in hashes):
            report.fail(part, "format", "tx_hashes must be SHA-256 values in lowercase hex")
            out[expected] = None
            continue
        joined = b"".join(bytes.fromhex(h) for h in hashes)
        if sha256(joined) != header.data_hash:
            report.fail(part, "data_hash", "transaction hashes do not match the header's data_hash")
        out[expected] = list(hashes)
    return out


def _transactions(entries: Any, block_hashes: dict[int, Listed], trust: TrustStore, ctx: Context) -> None:
    report = ctx.report
    if not isinstance(entries, list):
        report.fail("transactions", "format", "transactions must be a list")
        return
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tx_id"), str):
            report.fail("transactions", "format", "a transaction entry has no tx_id")
            continue
        tx_id = entry["tx_id"]
        part = f"tx {short(tx_id)}"
        if tx_id in ctx.txs:
            report.fail(part, "format", "listed twice")
            continue
        try:
            text = entry.get("envelope", "")
            envelope = base64.b64decode(text, validate=True)
            if base64.b64encode(envelope).decode("ascii") != text:
                raise ValueError("not canonical base64")  # else two texts could carry the same bytes
            parsed = ParsedTx.parse(envelope)
        except (binascii.Error, ValueError, TypeError) as exc:
            report.fail(part, "envelope", f"envelope unreadable: {exc}")
            continue
        report.count("transactions")
        unexpected(report, part, "transaction", entry)
        block, index = entry.get("block"), entry.get("index")
        ok = _placement(part, envelope, block, index, entry.get("status"), block_hashes, report)
        prop, resp, env = parsed.proposal, parsed.response, parsed.envelope
        if prop.tx_id != tx_id:
            report.fail(part, "tx_id", f"envelope carries tx id {short(prop.tx_id)}")
            ok = False
        if make_tx_id(prop.nonce, prop.creator) != prop.tx_id:
            report.fail(part, "tx_id", "tx id is not SHA-256(nonce ‖ creator)")
            ok = False
        if prop.channel != report.network_id:
            report.fail(part, "network", f"proposed on network {prop.channel!r}")
            ok = False
        if prop.fn != entry.get("function"):
            report.fail(part, "function", f"envelope calls {prop.fn}, bundle says {entry.get('function')}")
            ok = False
        ok &= _signature(
            report,
            part,
            "creator",
            f"creator {prop.creator_msp_id} of {part}",
            trust,
            prop.creator_msp_id,
            prop.creator_cert,
            env.creator_signature,
            env.proposal_bytes,
        )
        if not parsed.proposal_hash_ok or resp.status != 200:
            report.fail(
                part, "response", "signed response does not belong to the proposal or is not a success"
            )
            ok = False
        endorsers: set[str] = set()
        for e in env.endorsements:
            if _signature(
                report,
                part,
                "endorsement",
                f"endorsement by {e.msp_id} on {part}",
                trust,
                e.msp_id,
                e.cert,
                e.signature,
                env.response_bytes,
            ):
                endorsers.add(e.msp_id)
        if not endorsers.intersection(ctx.chaincode_orgs):
            report.fail(part, "policy", f"no valid endorsement by any of {list(ctx.chaincode_orgs)}")
            ok = False
        ctx.txs[tx_id] = VerifiedTx(
            tx_id,
            block if isinstance(block, int) else -1,
            index if isinstance(index, int) else -1,
            prop.fn,
            prop.creator_msp_id,
            prop.datetime(),
            dict(resp.rwset.writes),
            list(resp.rwset.ranges),
            endorsers,
            ok,
            list(prop.args),
        )


def _placement(
    part: str,
    envelope: bytes,
    block: Any,
    index: Any,
    status: Any,
    block_hashes: dict[int, Listed],
    report: VerificationReport,
) -> bool:
    """The envelope's hash must sit at (block, index) of a header of the chain, committed as VALID.
    (Validation codes live outside the hashed data, as Fabric's TRANSACTIONS_FILTER does: the bundle
    states VALID, and signatures and policies are re-checked here; MVCC cannot be re-run offline.)"""
    hashes = block_hashes.get(block) if isinstance(block, int) else None
    if hashes is None or not isinstance(index, int) or not 0 <= index < len(hashes):
        report.fail(part, "inclusion", f"block {block} of the bundle lists no transaction at index {index}")
        return False
    ok = True
    if hashes[index] != sha256(envelope).hex():
        report.fail(part, "inclusion", f"envelope hash is not the one block {block} lists at index {index}")
        ok = False
    if status != "VALID":
        report.fail(part, "validation", f"committed as {status}: only VALID transactions count")
        ok = False
    return ok


def _signature(
    report: VerificationReport,
    part: str,
    check: str,
    who: str,
    trust: TrustStore,
    msp_id: str,
    cert: bytes,
    signature: bytes,
    data: bytes,
) -> bool:
    report.count(f"{check} signatures")
    if trust.identity(msp_id, cert) is None:
        report.fail(who, "certificate", f"certificate does not chain to {msp_id}'s CA in the genesis block")
        return False
    if not trust.verify(msp_id, cert, signature, data):
        report.fail(who, check, "bad signature")
        return False
    return True
