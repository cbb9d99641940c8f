"""Channel configuration updates without configtxlator (ADR 0056): fetch the channel's latest config block,
change the decoded `Config`, compute the `ConfigUpdate` (read set / write set), have it signed by the orgs
whose `Admins` policies the change needs, and submit it to the orderer (`peer channel signconfigtx` and
`peer channel update` as those orgs' admins).

The delta follows the rules the orderer's config validator applies (Fabric's configtx): every element
changed is written at its version + 1; a group whose *membership* (its set of values, policies, groups, or
its mod_policy) changes is written at version + 1 and must then list its unchanged members at their current
versions; a group that only contains changes keeps its version in both sets. The read set pins the
versions the update was computed against, so an update over a stale config is refused by the orderer.

Generic on purpose: retiring a node key (network/hsm_retire.py) changes one org's MSP value; adding an org
adds a group under /Channel/Application.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import msp_config_pb2

from network.admin import orderer_tls_args, peer_admin_env
from network.layout import CHANNEL, ORDERER_DOMAIN, Layout
from network.procs import NetworkError, run


def admin_env(layout: Layout, who: str) -> dict[str, str]:
    """The `peer` CLI environment of `who`'s Admin: a peer org key ("provider"...) or "orderer"."""
    if who != "orderer":
        return peer_admin_env(layout, layout.org(who))
    env = peer_admin_env(layout, layout.orgs[0])  # any peer's CLI config; the identity is the orderer org's
    env.update(
        CORE_PEER_LOCALMSPID="OrdererMSP",
        CORE_PEER_MSPCONFIGPATH=str(layout.orderer_org_dir / "users" / f"Admin@{ORDERER_DOMAIN}" / "msp"),
    )
    return env


def fetch_config_block(layout: Layout, who: str = "provider") -> common_pb2.Block:
    """The channel's latest config block, from the orderer (`peer channel fetch config`)."""
    with tempfile.TemporaryDirectory(prefix="cfg-") as tmp:
        out = Path(tmp) / "config.block"
        args = ["channel", "fetch", "config", str(out), "-c", CHANNEL, *orderer_tls_args(layout)]
        run([str(layout.binary("peer")), *args], admin_env(layout, who), timeout=60)
        return common_pb2.Block.FromString(out.read_bytes())


def config_of(block: common_pb2.Block) -> configtx_pb2.Config:
    """The `Config` a config block carries (its one envelope's ConfigEnvelope)."""
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    if header.type != common_pb2.HeaderType.CONFIG:
        raise NetworkError(f"block {block.header.number} is not a config block (type {header.type})")
    return configtx_pb2.ConfigEnvelope.FromString(payload.data).config


def _delta(
    original: configtx_pb2.ConfigGroup, updated: configtx_pb2.ConfigGroup
) -> tuple[configtx_pb2.ConfigGroup, configtx_pb2.ConfigGroup, bool]:
    """(read set, write set, changed) for one group, recursively."""
    read = configtx_pb2.ConfigGroup(version=original.version)
    write = configtx_pb2.ConfigGroup(version=original.version)
    membership = original.mod_policy != updated.mod_policy
    same: list[tuple[str, str, int]] = []  # (kind, name, version) of unchanged members
    changed = False
    for kind in ("values", "policies"):
        old, new = getattr(original, kind), getattr(updated, kind)
        membership |= set(old) != set(new)
        for name, element in new.items():
            if name in old and old[name].mod_policy == element.mod_policy and _same(old[name], element):
                same.append((kind, name, old[name].version))
                continue
            target = getattr(write, kind)[name]
            target.CopyFrom(element)
            target.version = old[name].version + 1 if name in old else 0
            changed = True
    membership |= set(original.groups) != set(updated.groups)
    for name, group in updated.groups.items():
        if name not in original.groups:
            _, sub_write, _ = _delta(configtx_pb2.ConfigGroup(), group)
            sub_write.version = 0
            sub_write.mod_policy = group.mod_policy
            write.groups[name].CopyFrom(sub_write)
            changed = True
            continue
        sub_read, sub_write, sub_changed = _delta(original.groups[name], group)
        if sub_changed:
            read.groups[name].CopyFrom(sub_read)
            write.groups[name].CopyFrom(sub_write)
            changed = True
        else:
            same.append(("groups", name, original.groups[name].version))
    if membership:
        for kind, name, version in same:
            for target in (read, write):
                getattr(target, kind)[name].version = version
        write.version = original.version + 1
        write.mod_policy = updated.mod_policy
        changed = True
    return read, write, changed


def _same(a: configtx_pb2.ConfigValue | configtx_pb2.ConfigPolicy, b: object) -> bool:
    if isinstance(a, configtx_pb2.ConfigValue):
        return a.value == b.value  # type: ignore[attr-defined]
    return a.policy == b.policy  # type: ignore[attr-defined]


def compute_update(
    original: configtx_pb2.Config, updated: configtx_pb2.Config, channel: str = CHANNEL
) -> configtx_pb2.ConfigUpdate:
    read, write, changed = _delta(original.channel_group, updated.channel_group)
    if not changed:
        raise NetworkError("no difference between the original and the updated config")
    return configtx_pb2.ConfigUpdate(channel_id=channel, read_set=read, write_set=write)


def update_envelope(update: configtx_pb2.ConfigUpdate) -> common_pb2.Envelope:
    """The unsigned CONFIG_UPDATE envelope `peer channel signconfigtx` / `update` take (-f)."""
    header = common_pb2.ChannelHeader(type=common_pb2.HeaderType.CONFIG_UPDATE, channel_id=update.channel_id)
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=header.SerializeToString()),
        data=configtx_pb2.ConfigUpdateEnvelope(config_update=update.SerializeToString()).SerializeToString(),
    )
    return common_pb2.Envelope(payload=payload.SerializeToString())


def submit(layout: Layout, update: configtx_pb2.ConfigUpdate, signed_by: Sequence[str]) -> None:
    """Sign by each of `signed_by` (org keys or "orderer"; the last one submits) and send to the orderer."""
    if not signed_by:
        raise NetworkError("a config update needs at least one admin signature")
    peer = str(layout.binary("peer"))
    with tempfile.TemporaryDirectory(prefix="cfgupd-") as tmp:
        path = Path(tmp) / "update.pb"
        path.write_bytes(update_envelope(update).SerializeToString())
        for who in signed_by[:-1]:
            run([peer, "channel", "signconfigtx", "-f", str(path)], admin_env(layout, who), timeout=60)
        args = ["channel", "update", "-f", str(path), "-c", update.channel_id, *orderer_tls_args(layout)]
        run([peer, *args], admin_env(layout, signed_by[-1]), timeout=60)


def update_config(
    layout: Layout, change: Callable[[configtx_pb2.Config], None], signed_by: Sequence[str]
) -> int:
    """Fetch the latest config, apply `change` to a copy, submit the delta; the old config's block number."""
    block = fetch_config_block(layout, signed_by[-1])
    original = config_of(block)
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    change(updated)
    submit(layout, compute_update(original, updated), signed_by)
    return block.header.number


def org_group(config: configtx_pb2.Config, mspid: str) -> configtx_pb2.ConfigGroup:
    """The org group whose MSP value names `mspid`, under Application or Orderer."""
    for section in ("Application", "Orderer"):
        for group in config.channel_group.groups[section].groups.values():
            if "MSP" in group.values and msp_id(group) == mspid:
                return group
    raise NetworkError(f"no org with MSP id {mspid} in the channel config")


def msp_id(group: configtx_pb2.ConfigGroup) -> str:
    config = msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value)
    return msp_config_pb2.FabricMSPConfig.FromString(config.config).name


def edit_msp(group: configtx_pb2.ConfigGroup, edit: Callable[[msp_config_pb2.FabricMSPConfig], None]) -> None:
    """Decode the group's FabricMSPConfig, apply `edit`, encode it back into the MSP value."""
    config = msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value)
    fabric = msp_config_pb2.FabricMSPConfig.FromString(config.config)
    edit(fabric)
    config.config = fabric.SerializeToString()
    group.values["MSP"].value = config.SerializeToString()
