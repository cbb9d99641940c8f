"""The block side of a Fabric proof bundle, offline (ADR 0034): the config block (trust anchor) and each
shipped block — header fields, data_hash over its envelopes, the orderer's signatures over
`OrdererBlockMetadata ‖ SignatureHeader ‖ DER(header)` satisfying /Channel/Orderer/BlockValidation of the
config block, the last config index they sign, and previous_hash links where blocks are consecutive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabric_protos.common import common_pb2

from hub.audit.fabric_msp import ChannelTrust, Identity, TrustError
from hub.audit.report import VerificationReport
from hub.audit.verify import unexpected

HEX64 = re.compile(r"^[0-9a-f]{64}$")
LIFECYCLE = "_lifecycle"
VALIDATION_PARAMETER = "VALIDATION_PARAMETER"
BLOCK_VALIDATION = "/Channel/Orderer/BlockValidation"
LIFECYCLE_ENDORSEMENT = "/Channel/Application/LifecycleEndorsement"
VALID = "VALID"


class Bad(ValueError):
    """A malformed part; the message says what."""


def b64(value: Any, what: str) -> bytes:
    """Canonical base64 only: two texts must never carry the same bytes."""
    if not isinstance(value, str):
        raise Bad(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Bad(f"{what} is not base64: {exc}") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise Bad(f"{what} is not canonical base64")
    return raw


def hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not HEX64.match(value):
        raise Bad(f"{what} must be a SHA-256 value in lowercase hex")
    return bytes.fromhex(value)


@dataclass
class Block:
    number: int
    header: common_pb2.BlockHeader
    data: list[bytes]
    last_config: int | None
    signed: bool  # orderer signatures checked and the policy satisfied

    @property
    def der(self) -> bytes:
        """ASN.1 DER SEQUENCE {number, previous_hash, data_hash}: what orderers sign
        (protoutil.BlockHeaderBytes); its SHA-256 is the block hash."""
        h = self.header
        n = h.number
        body = _der(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big"))
        return _der(0x30, body + _der(0x04, h.previous_hash) + _der(0x04, h.data_hash))

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.der).digest()


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def _block(entry: Any, part: str, report: VerificationReport, kind: str) -> Block:
    """Decode one block entry; checks data_hash. Signatures are checked by `_signatures`."""
    if not isinstance(entry, Mapping):
        raise Bad("a block entry must be a JSON object")
    unexpected(report, part, kind, entry)
    number = entry.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise Bad("number must be a block number")
    header = common_pb2.BlockHeader(
        number=number,
        previous_hash=hex32(entry.get("previous_hash"), "previous_hash") if number else b"",
        data_hash=hex32(entry.get("data_hash"), "data_hash"),
    )
    if number == 0 and entry.get("previous_hash") is not None:
        raise Bad("block 0 has no previous_hash")
    data = entry.get("data")
    if not isinstance(data, list) or not data:
        raise Bad("data must be the block's envelopes")
    envelopes = [b64(d, f"envelope {i}") for i, d in enumerate(data)]
    if hashlib.sha256(b"".join(envelopes)).digest() != header.data_hash:
        report.fail(part, "data_hash", "envelopes do not match the header's data_hash")
    report.count("block headers")
    return Block(number, header, envelopes, None, False)


def _signatures(
    entry: Mapping[str, Any], block: Block, part: str, trust: ChannelTrust, report: VerificationReport
) -> None:
    """Orderer signatures over metadata value ‖ signature header ‖ DER header
    (protoutil.BlockSignatureVerifier)."""
    value = b64(entry.get("orderer_metadata"), "orderer_metadata")
    sigs = entry.get("orderer_signatures")
    if not isinstance(sigs, list):
        raise Bad("orderer_signatures must be a list")
    try:
        block.last_config = common_pb2.OrdererBlockMetadata.FromString(value).last_config.index
    except Exception as exc:  # protobuf DecodeError
        raise Bad(f"orderer metadata unreadable: {exc}") from exc
    header_der = block.der
    signers: list[Identity] = []
    for i, sig in enumerate(sigs):
        who = f"orderer signature {i} on {part}"
        if not isinstance(sig, Mapping):
            raise Bad("an orderer signature must be a JSON object")
        unexpected(report, who, "fabric signature", sig)
        sh_bytes, signature = (
            b64(sig.get("header"), "signature header"),
            b64(sig.get("signature"), "signature"),
        )
        report.count("orderer signatures")
        try:
            creator = common_pb2.SignatureHeader.FromString(sh_bytes).creator
            ident = trust.identity(creator)
        except TrustError as exc:
            report.fail(who, "certificate", str(exc))
            continue
        except Exception as exc:  # protobuf DecodeError
            report.fail(who, "format", f"signature header unreadable: {exc}")
            continue
        if not trust.verify(ident, signature, value + sh_bytes + header_der):
            report.fail(who, "orderer_signature", f"bad signature by {ident.msp_id}")
            continue
        signers.append(ident)
    if not trust.policy(BLOCK_VALIDATION, signers):
        report.fail(part, "orderer_policy", f"valid orderer signatures do not satisfy {BLOCK_VALIDATION}")
        return
    block.signed = True


def config_of(ledger: Mapping[str, Any], report: VerificationReport) -> tuple[ChannelTrust, Block] | None:
    part = "config block"
    try:
        entry = ledger.get("config")
        block = _block(entry, part, report, "fabric block")
        envelope = block.data[0] if len(block.data) == 1 else b""
        raw = common_pb2.Block(header=block.header)
        raw.data.data.append(envelope)
        trust = ChannelTrust.from_config_block(raw)
    except (Bad, TrustError) as exc:
        report.fail(part, "config", f"unreadable: {exc}")
        return None
    except Exception as exc:  # protobuf DecodeError, x509 errors
        report.fail(part, "config", f"unreadable: {type(exc).__name__}: {exc}")
        return None
    report.genesis_hash = block.hash.hex()
    report.org_cas = {m: msp.fingerprints() for m, msp in sorted(trust.msps.items())}
    if trust.channel_id != report.network_id:
        report.fail(
            part,
            "network",
            f"config block is channel {trust.channel_id!r}, bundle says {report.network_id!r}",
        )
    if block.number > 0:  # a later config block: signed by the orderers it names itself (see ADR 0034)
        try:
            _signatures(entry, block, part, trust, report)
        except Bad as exc:
            report.fail(part, "format", str(exc))
    elif entry.get("orderer_signatures") not in (None, []) or entry.get("orderer_metadata") is not None:
        report.fail(part, "format", "the genesis block carries no orderer signatures")
    return trust, block


def blocks_of(
    entries: Any,
    config: Block,
    trust: ChannelTrust,
    report: VerificationReport,
    *,
    at: Callable[[int], tuple[int, ChannelTrust]] | None = None,
    updates: Sequence[Block] = (),
) -> dict[int, Block]:
    """The shipped blocks, each checked under the config governing it: `at(number)` gives (config block
    number, its trust) when the bundle carries config updates (ADR 0057), else the anchor's."""
    out: dict[int, Block] = {config.number: config}
    out.update({u.number: u for u in updates})
    if not isinstance(entries, list):
        report.fail("blocks", "format", "blocks must be a list")
        return out
    last = config.number
    for i, entry in enumerate(entries):
        number = entry.get("number") if isinstance(entry, Mapping) else None
        part = f"block {number if isinstance(number, int) else i}"
        try:
            if not isinstance(number, int) or number <= last or number in out:
                raise Bad("blocks must be listed in ascending order after the config block, each once")
            governing, block_trust = at(number) if at else (config.number, trust)
            block = _block(entry, part, report, "fabric block")
            _signatures(entry, block, part, block_trust, report)
        except Bad as exc:
            report.fail(part, "format", str(exc))
            continue
        if block.last_config != governing:
            report.fail(
                part,
                "config",
                f"signed as governed by config block {block.last_config}, the bundle's is block {governing}",
            )
        out[number] = block
        last = number
    for number, block in sorted(out.items()):
        previous = out.get(number - 1)
        if previous is not None and block.header.previous_hash != previous.hash:
            report.fail(f"block {number}", "hash_link", f"header hash does not link to block {number - 1}")
    return out
