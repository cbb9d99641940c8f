"""Channel configuration updates on the dev network, the way a consortium makes them (ADR 0054).

1. fetch the channel's current config block from the orderer (`peer channel fetch config`);
2. change a copy of its `Config` in Python (add an org group, replace a value...);
3. compute the `ConfigUpdate` (read set / write set) from the two configs: the same computation as
   configtxlator's `compute_update`, done here on the protos because Fabric 3 ships no configtxlator in
   our binary set (`compute_update` below; the algorithm is the one in Fabric's
   internal/configtxlator/update: an element whose content or membership changed gets version + 1, an
   element that is only read is listed at its current version, a new element starts at version 0);
4. wrap it in an unsigned CONFIG_UPDATE envelope file;
5. each admin the modified element's mod_policy requires signs the file with `peer channel signconfigtx`
   (in a real consortium: on their own machine, passing the file along), the last one submits it with
   `peer channel update` (which adds that admin's signature);
6. wait until every peer holds the config block.

Reusable for any config change: `apply(layout, mutate, policy_group=...)` runs steps 1-6 for a function
that edits the config and works out the signers from the policy; `update_config(layout, change, signed_by)`
does 1-5 with the signers named (retiring a node key, ADR 0056, is signed by the node's own org admin).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import msp_config_pb2, msp_principal_pb2

from network import membership
from network.admin import channel_height, orderer_tls_args, peer_admin_env
from network.layout import CHANNEL, ORDERER_DOMAIN, Layout, PeerOrg
from network.procs import NetworkError, run, wait_until

# ---- the config as the orderer has it ----


def admin_env(layout: Layout, who: PeerOrg | str) -> dict[str, str]:
    """The `peer` CLI environment of `who`'s Admin: a peer org (or its key, "provider"...) or "orderer"."""
    if isinstance(who, PeerOrg):
        return peer_admin_env(layout, who)
    if who != "orderer":
        return peer_admin_env(layout, layout.org(who))
    env = peer_admin_env(layout, layout.orgs[0])  # any peer's CLI config; the identity is the orderer org's
    env.update(
        CORE_PEER_LOCALMSPID="OrdererMSP",
        CORE_PEER_MSPCONFIGPATH=str(layout.orderer_org_dir / "users" / f"Admin@{ORDERER_DOMAIN}" / "msp"),
    )
    return env


def fetch_config_block(
    layout: Layout, who: PeerOrg | str = "provider", channel: str = CHANNEL
) -> common_pb2.Block:
    """The channel's (default `billing`) latest config block, fetched from the orderer as `who`'s admin."""
    with tempfile.TemporaryDirectory(prefix="cfg-") as tmp:
        out = Path(tmp) / "config.block"
        args = ["channel", "fetch", "config", str(out), "-c", channel, *orderer_tls_args(layout)]
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


def updates_dir(layout: Layout) -> Path:
    d = layout.config_dir / "updates"
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---- compute the update (configtxlator's computation) ----


def _elements(original: Mapping, updated: Mapping) -> tuple[dict, dict, dict, bool]:  # type: ignore[type-arg]
    """Values or policies of one group: (read, write, same, membership changed). A changed or new element is
    written whole at its version + 1 (0 when new); an unchanged one is kept aside at its version, listed only
    if its group's membership changes. Elements are never only read."""
    write: dict[str, Any] = {}
    same: dict[str, Any] = {}
    for name, new in updated.items():
        old = original.get(name) if name in original else None
        if old is not None and old.mod_policy == new.mod_policy and _content(old) == _content(new):
            same[name] = type(old)(version=old.version)
            continue
        element = type(new)()
        element.CopyFrom(new)
        element.version = old.version + 1 if old is not None else 0
        write[name] = element
    return {}, write, same, set(original) != set(updated)


def _content(element: configtx_pb2.ConfigValue | configtx_pb2.ConfigPolicy) -> bytes:
    if isinstance(element, configtx_pb2.ConfigPolicy):
        return _bytes(element.policy)
    return element.value


def _groups(original: Mapping, updated: Mapping) -> tuple[dict, dict, dict, bool]:  # type: ignore[type-arg]
    read: dict[str, configtx_pb2.ConfigGroup] = {}
    write: dict[str, configtx_pb2.ConfigGroup] = {}
    same: dict[str, configtx_pb2.ConfigGroup] = {}
    changed_members = False
    for name, old in original.items():
        if name not in updated:
            changed_members = True
            continue
        group_read, group_write, changed = _group(old, updated[name])
        if not changed:
            same[name] = group_read
            continue
        read[name] = group_read
        write[name] = group_write
    for name, new in updated.items():
        if name in original:
            continue
        changed_members = True
        _, group_write, _ = _group(configtx_pb2.ConfigGroup(), new)
        group_write.version = 0
        group_write.mod_policy = new.mod_policy
        write[name] = group_write
    return read, write, same, changed_members


def _group(
    original: configtx_pb2.ConfigGroup, updated: configtx_pb2.ConfigGroup
) -> tuple[configtx_pb2.ConfigGroup, configtx_pb2.ConfigGroup, bool]:
    p_read, p_write, p_same, p_members = _elements(original.policies, updated.policies)
    v_read, v_write, v_same, v_members = _elements(original.values, updated.values)
    g_read, g_write, g_same, g_members = _groups(original.groups, updated.groups)
    members_changed = p_members or v_members or g_members or original.mod_policy != updated.mod_policy
    if not members_changed:
        if not (p_read or p_write or v_read or v_write or g_read or g_write):
            return (
                configtx_pb2.ConfigGroup(version=original.version),
                configtx_pb2.ConfigGroup(version=original.version),
                False,
            )
        return (
            _make(original.version, p_read, v_read, g_read),
            _make(original.version, p_write, v_write, g_write),
            True,
        )
    for same, read, write in (
        (p_same, p_read, p_write),
        (v_same, v_read, v_write),
        (g_same, g_read, g_write),
    ):
        for name, element in same.items():
            read[name] = element
            write[name] = element
    write_group = _make(original.version + 1, p_write, v_write, g_write)
    write_group.mod_policy = updated.mod_policy
    return _make(original.version, p_read, v_read, g_read), write_group, True


def _make(version: int, policies: dict, values: dict, groups: dict) -> configtx_pb2.ConfigGroup:  # type: ignore[type-arg]
    group = configtx_pb2.ConfigGroup(version=version)
    for name, p in policies.items():
        group.policies[name].CopyFrom(p)
    for name, v in values.items():
        group.values[name].CopyFrom(v)
    for name, g in groups.items():
        group.groups[name].CopyFrom(g)
    return group


def _bytes(message: object) -> bytes:
    return message.SerializeToString(deterministic=True)  # type: ignore[attr-defined]


def compute_update(
    original: configtx_pb2.Config, updated: configtx_pb2.Config, channel: str = CHANNEL
) -> configtx_pb2.ConfigUpdate:
    """The ConfigUpdate that turns `original` into `updated`; NetworkError when they do not differ."""
    read_set, write_set, changed = _group(original.channel_group, updated.channel_group)
    if not changed:
        raise NetworkError("no difference between the original and the updated config")
    update = configtx_pb2.ConfigUpdate(channel_id=channel)
    update.read_set.CopyFrom(read_set)
    update.write_set.CopyFrom(write_set)
    return update


def update_envelope(update: configtx_pb2.ConfigUpdate) -> common_pb2.Envelope:
    """The unsigned CONFIG_UPDATE envelope `peer channel signconfigtx` and `update` take."""
    header = common_pb2.ChannelHeader(type=common_pb2.CONFIG_UPDATE, channel_id=update.channel_id)
    body = configtx_pb2.ConfigUpdateEnvelope(config_update=update.SerializeToString())
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=header.SerializeToString()), data=body.SerializeToString()
    )
    return common_pb2.Envelope(payload=payload.SerializeToString())


# ---- who must sign ----


def policy_orgs(config: configtx_pb2.Config, group_path: Sequence[str], policy: str) -> list[str]:
    """The MSP ids whose admins satisfy `policy` of the group at `group_path` (under /Channel).

    A signature policy: every org it names (an n-of-m rule is met by all m). An implicit-meta policy
    (ANY / ALL / MAJORITY of the subgroups' `policy`): that many subgroups, in name order, each
    resolved the same way."""
    group = config.channel_group
    for name in group_path:
        group = group.groups[name]
    wrapped = group.policies[policy].policy
    if wrapped.type == policies_pb2.Policy.SIGNATURE:
        envelope = policies_pb2.SignaturePolicyEnvelope.FromString(wrapped.value)
        out = []
        for principal in envelope.identities:
            if principal.principal_classification == msp_principal_pb2.MSPPrincipal.ROLE:
                out.append(msp_principal_pb2.MSPRole.FromString(principal.principal).msp_identifier)
        return sorted(set(out))
    if wrapped.type == policies_pb2.Policy.IMPLICIT_META:
        meta = policies_pb2.ImplicitMetaPolicy.FromString(wrapped.value)
        subgroups = sorted(group.groups)
        count = membership.implicit_meta_need(meta.rule, len(subgroups))
        out = []
        for sub in subgroups[:count]:
            out += policy_orgs(config, [*group_path, sub], meta.sub_policy)
        return sorted(set(out))
    raise NetworkError(f"policy {'/'.join(group_path)}/{policy} is of an unsupported type {wrapped.type}")


# ---- sign, submit, wait ----


def submit(
    layout: Layout,
    update: configtx_pb2.ConfigUpdate,
    signed_by: Sequence[PeerOrg | str],
    *,
    path: Path | None = None,
) -> None:
    """Sign by each of `signed_by` (orgs, org keys or "orderer"; the last one submits) and send it to the
    orderer. `path` keeps the envelope file (a record of what was signed); default: a temporary file."""
    if not signed_by:
        raise NetworkError("a config update needs at least one admin signature")
    peer = str(layout.binary("peer"))
    with tempfile.TemporaryDirectory(prefix="cfgupd-") as tmp:
        file = path or Path(tmp) / "update.pb"
        file.write_bytes(update_envelope(update).SerializeToString())
        for who in signed_by[:-1]:
            run([peer, "channel", "signconfigtx", "-f", str(file)], admin_env(layout, who), timeout=60)
        args = ["channel", "update", "-f", str(file), "-c", update.channel_id, *orderer_tls_args(layout)]
        run([peer, *args], admin_env(layout, signed_by[-1]), timeout=60)


def update_config(
    layout: Layout, change: Callable[[configtx_pb2.Config], None], signed_by: Sequence[PeerOrg | str]
) -> int:
    """Fetch the latest config, apply `change` to a copy, submit the delta signed by `signed_by`; the old
    config's block number."""
    block = fetch_config_block(layout, signed_by[-1])
    original = config_of(block)
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    change(updated)
    submit(layout, compute_update(original, updated), signed_by)
    return block.header.number


def apply(
    layout: Layout,
    mutate: Callable[[configtx_pb2.Config], None],
    *,
    policy_group: Sequence[str],
    name: str,
    timeout: float = 180.0,
    avoid: Sequence[str] = (),
) -> dict[str, object]:
    """Run one config update: fetch, `mutate(config copy)`, compute, sign by the admins of a smallest set
    of orgs that satisfies the mod_policy of `policy_group` (network/membership.py; the orgs in `avoid`,
    e.g. the one being removed, only when the others do not suffice), submit, wait until the orderer
    holds the new config block. Returns {block, signers, file}. `name` names the envelope file under
    config/updates/."""
    by_msp = {o.mspid: o for o in layout.orgs}
    anyone = layout.org("provider")
    block = fetch_config_block(layout, anyone)
    original = config_of(block)
    updated = configtx_pb2.Config()
    updated.CopyFrom(original)
    mutate(updated)
    update = compute_update(original, updated)
    group = original.channel_group
    for g in policy_group:
        group = group.groups[g]
    signers = membership.signers(original, policy_group, group.mod_policy, list(by_msp), avoid=avoid)
    file = updates_dir(layout) / f"{name}.pb"
    submit(layout, update, [by_msp[m] for m in signers], path=file)
    previous = block.header.number

    def applied() -> bool:
        return fetch_config_block(layout, anyone).header.number > previous

    wait_until("the config update in a new config block", applied, timeout, [])
    number = fetch_config_block(layout, anyone).header.number
    return {"block": number, "signers": signers, "file": str(file)}


def wait_peers_at(layout: Layout, orgs: Sequence[PeerOrg], height: int, timeout: float) -> None:
    """Wait until each org's peer holds at least `height` blocks."""
    for org in orgs:
        env = peer_admin_env(layout, org)
        wait_until(
            f"peer {org.key} at height {height}",
            lambda e=env: channel_height(layout, e) >= height,
            timeout,
            [],
        )


# ---- org groups and their MSP ----


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
