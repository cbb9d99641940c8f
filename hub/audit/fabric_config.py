"""Config blocks after the anchor in a Fabric proof bundle (`ledger.config_updates`, ADR 0057), offline.

A proof whose blocks span a channel config update (a node key retired by a CRL, an org added) ships every
config block from the anchor (`ledger.config`) to the one governing its last block. Each is checked under
the configuration before it, as a peer applies it:

- its orderer signatures satisfy the previous config's /Channel/Orderer/BlockValidation and its signed
  metadata names itself as the last config;
- it holds one CONFIG envelope for the same channel whose `Config.sequence` is the previous one's + 1 (so
  no config block in between can be left out);
- its `last_update` is a CONFIG_UPDATE for the channel whose read set matches the previous config's
  versions, whose signatures are by identities valid under the previous config, and those signers satisfy
  the mod_policy (previous config) of every element the write set changes: a value or policy written at
  version + 1, a group written at version + 1 (membership change: its own mod_policy);
- the new config is exactly the previous one with that write set applied.

Then blocks after it are checked under its MSPs and policies (`TrustChain.at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fabric_protos.common import common_pb2, configtx_pb2

from hub.audit.fabric_chain import Bad, Block, _block, _signatures
from hub.audit.fabric_msp import ChannelTrust, Identity, TrustError
from hub.audit.report import VerificationReport


@dataclass
class TrustChain:
    """(config block number, its trust), ascending: the anchor first."""

    configs: list[tuple[int, ChannelTrust]] = field(default_factory=list)

    def at(self, number: int) -> tuple[int, ChannelTrust]:
        """The config governing block `number`: the last config block before it (or itself)."""
        found = self.configs[0]
        for entry in self.configs:
            if entry[0] <= number:
                found = entry
        return found

    @property
    def numbers(self) -> set[int]:
        return {n for n, _ in self.configs}


def config_chain(
    entries: Any, anchor: Block, trust: ChannelTrust, report: VerificationReport
) -> tuple[TrustChain, list[Block]]:
    """Verify `ledger.config_updates`; the chain of trusts and the verified config blocks."""
    chain = TrustChain([(anchor.number, trust)])
    blocks: list[Block] = []
    if entries is None:
        return chain, blocks
    if not isinstance(entries, list) or not entries:
        report.fail("config updates", "format", "config_updates must be a non-empty list of config blocks")
        return chain, blocks
    previous = anchor
    for i, entry in enumerate(entries):
        number = entry.get("number") if isinstance(entry, Mapping) else None
        part = f"config block {number if isinstance(number, int) else i}"
        try:
            if not isinstance(number, int) or number <= previous.number:
                raise Bad("config updates must be listed in ascending order after the anchor, each once")
            block = _block(entry, part, report, "fabric block")
            _signatures(entry, block, part, trust, report)
            if not block.signed:
                return chain, blocks
            if block.last_config != block.number:
                report.fail(part, "config", f"signed as governed by config block {block.last_config}")
            new = _next_trust(block, trust, part, report)
        except Bad as exc:
            report.fail(part, "format", str(exc))
            return chain, blocks
        except TrustError as exc:
            report.fail(part, "config", f"unreadable: {exc}")
            return chain, blocks
        except Exception as exc:  # protobuf DecodeError, x509 errors
            report.fail(part, "config", f"unreadable: {type(exc).__name__}: {exc}")
            return chain, blocks
        report.count("config updates")
        if new is None:
            return chain, blocks
        chain.configs.append((block.number, new))
        blocks.append(block)
        previous, trust = block, new
    return chain, blocks


def _next_trust(
    block: Block, trust: ChannelTrust, part: str, report: VerificationReport
) -> ChannelTrust | None:
    if len(block.data) != 1:
        raise Bad("a config block holds exactly one envelope")
    raw = common_pb2.Block(header=block.header)
    raw.data.data.append(block.data[0])
    new = ChannelTrust.from_config_block(raw)
    ok = True
    if new.channel_id != trust.channel_id:
        report.fail(part, "network", f"config of channel {new.channel_id!r}")
        ok = False
    if new.config.sequence != trust.config.sequence + 1:
        report.fail(
            part,
            "sequence",
            f"config sequence {new.config.sequence} does not follow {trust.config.sequence}: "
            "a config block is missing or repeated",
        )
        ok = False
    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(block.data[0]).payload)
    last = configtx_pb2.ConfigEnvelope.FromString(payload.data).last_update
    update_payload = common_pb2.Payload.FromString(last.payload)
    header = common_pb2.ChannelHeader.FromString(update_payload.header.channel_header)
    if header.type != common_pb2.HeaderType.CONFIG_UPDATE:
        raise Bad("last_update is not a CONFIG_UPDATE")
    envelope = configtx_pb2.ConfigUpdateEnvelope.FromString(update_payload.data)
    update = configtx_pb2.ConfigUpdate.FromString(envelope.config_update)
    if update.channel_id != trust.channel_id:
        report.fail(part, "network", f"config update for channel {update.channel_id!r}")
        ok = False
    signers: list[Identity] = []
    for sig in envelope.signatures:
        report.count("config update signatures")
        try:
            ident = trust.identity(common_pb2.SignatureHeader.FromString(sig.signature_header).creator)
        except TrustError as exc:
            report.fail(part, "certificate", f"config update signer: {exc}")
            ok = False
            continue
        if not trust.verify(ident, sig.signature, sig.signature_header + envelope.config_update):
            report.fail(part, "config_signature", f"bad config update signature by {ident.msp_id}")
            ok = False
            continue
        signers.append(ident)
    if not _read_set_matches(trust.config.channel_group, update.read_set):
        report.fail(part, "read_set", "the update was computed against another configuration")
        ok = False
    denied: list[str] = []
    applied = _apply(trust.config.channel_group, update.write_set, "/Channel", trust, signers, denied)
    for what in denied:
        report.fail(part, "mod_policy", what)
        ok = False
    if applied is None or applied != new.config.channel_group:
        report.fail(
            part, "config_update", "the config is not the previous one with the signed update applied"
        )
        ok = False
    return new if ok else None


def _read_set_matches(current: configtx_pb2.ConfigGroup, read: configtx_pb2.ConfigGroup) -> bool:
    if read.version != current.version:
        return False
    for kind in ("values", "policies"):
        have = getattr(current, kind)
        for name, element in getattr(read, kind).items():
            if name not in have or have[name].version != element.version:
                return False
    return all(
        name in current.groups and _read_set_matches(current.groups[name], sub)
        for name, sub in read.groups.items()
    )


def _mod_path(mod_policy: str, group_path: str) -> str:
    return mod_policy if mod_policy.startswith("/") else f"{group_path}/{mod_policy}"


def _allowed(trust: ChannelTrust, path: str, signers: list[Identity], what: str, denied: list[str]) -> None:
    try:
        ok = trust.policy(path, signers)
    except TrustError as exc:
        denied.append(f"{what}: {exc}")
        return
    if not ok:
        denied.append(f"{what}: the update's signatures do not satisfy its mod_policy {path}")


def _apply(
    old: configtx_pb2.ConfigGroup,
    write: configtx_pb2.ConfigGroup,
    path: str,
    trust: ChannelTrust,
    signers: list[Identity],
    denied: list[str],
) -> configtx_pb2.ConfigGroup | None:
    """`old` with `write` applied (configtx rules); records each change its mod_policy does not allow."""
    out = configtx_pb2.ConfigGroup()
    if write.version == old.version + 1:  # membership change: exactly the listed members remain
        _allowed(trust, _mod_path(old.mod_policy, path), signers, f"group {path}", denied)
        out.version, out.mod_policy = write.version, write.mod_policy
        listed_only = True
    elif write.version == old.version:
        out.version, out.mod_policy = old.version, old.mod_policy
        listed_only = False
    else:
        return None
    for kind in ("values", "policies"):
        before, written, result = getattr(old, kind), getattr(write, kind), getattr(out, kind)
        if not listed_only:
            for name, element in before.items():
                result[name].CopyFrom(element)
        for name, element in written.items():
            if name in before and element.version == before[name].version:
                result[name].CopyFrom(before[name])  # listed unchanged
            elif name in before and element.version == before[name].version + 1:
                mod = _mod_path(before[name].mod_policy, path)
                _allowed(trust, mod, signers, f"{kind[:-1]} {path}/{name}", denied)
                result[name].CopyFrom(element)
            elif name not in before and element.version == 0 and listed_only:
                result[name].CopyFrom(element)  # new: the parent's membership change allowed it
            else:
                return None
    if not listed_only:
        for name, group in old.groups.items():
            out.groups[name].CopyFrom(group)
    for name, group in write.groups.items():
        if name in old.groups:
            sub = _apply(old.groups[name], group, f"{path}/{name}", trust, signers, denied)
            if sub is None:
                return None
            out.groups[name].CopyFrom(sub)
        elif group.version == 0 and listed_only:
            out.groups[name].CopyFrom(group)  # a new group, whole
        else:
            return None
    return out
