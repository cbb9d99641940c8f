"""More channels on the running network: `ledgerhub network add-channel NAME --org ...` (ADR 0067).

ADR 0066 made the channel the confidentiality boundary: a customer that must not see another gets a channel
of its own with the provider and the auditor. `add_channel` creates one from a genesis block, the way `up`
creates `billing`, and puts the chaincode on it. Each step waits on a real signal and is skipped when an
earlier (interrupted) run did it already, so running it again finishes what is missing and changes nothing:

1. the channel profile: `billing`'s profile (orderer, block cutting, capabilities, policies) with the
   members' orgs in /Channel/Application and the member policies naming the members' business parties
   (the orgs that endorse; the auditor is in none, as in `billing`): Admins and LifecycleEndorsement a
   majority of them (AND for a pair), Endorsement any one; rendered to config/channels/NAME/configtx.yaml;
2. `configtxgen -outputBlock` (kept: the block is the channel's genesis, made once);
3. `osnadmin channel join` on the orderer; wait until the channel is active and its Raft node leads;
4. each member's peer joins from the block; wait for its height;
5. the chaincode: each member's peer installs the package the network runs (the same CCaaS server serves
   every channel: the shim routes by (channel, txid)); each member org approves sequence 1 of the same
   name and version for the same package id with the channel's Endorsement as its signature policy; the
   provider commits it; wait until every member's peer has it committed;
6. gossip (anchor peers are in the genesis config): each member's peer learns the others (not fatal);
7. network.json `channels[NAME]` = {orgs, block, profile, endorsement_policy, sequence, ...}.

`members(info, channel)` is the one place that answers "who is on this channel" from network.json.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from network import membership
from network.admin import (
    base_env,
    channel_height,
    committed_sequence,
    orderer_tls_args,
    osnadmin,
    peer_admin_env,
)
from network.deploy import approvals, approve_definition, commit_definition, definition_args
from network.layout import CHANNEL, Layout, PeerOrg
from network.procs import NetworkError, group_rss_kb, metric, recorded, run, wait_until

# Fabric's channel-name rule (common/configtx/validator.go): lower-case letters, digits, dots and dashes,
# starting with a letter, shorter than 250 characters.
NAME = re.compile(r"^[a-z][a-z0-9.-]{0,248}$")
PROFILE = "BillingChannel"


class ChannelRefused(NetworkError, ValueError):
    """Bad input for add_channel: nothing was changed."""


# ---- who is on which channel (network.json) ----


def names(info: dict[str, Any]) -> list[str]:
    """The network's channels, the default (`info["channel"]`) first."""
    default = info.get("channel", CHANNEL)
    return [default, *(c for c in info.get("channels", {}) if c != default)]


def members(info: dict[str, Any], channel: str | None = None) -> list[str]:
    """The MSP ids of the orgs on `channel` (default: the network's default channel). A network.json written
    before channels were recorded has one channel, with every org of `orgs` on it."""
    default = info.get("channel", CHANNEL)
    channel = channel or default
    recorded_channels = info.get("channels")
    if recorded_channels and channel in recorded_channels:
        return list(recorded_channels[channel]["orgs"])
    if channel == default and not recorded_channels:
        return [o["mspid"] for o in info["orgs"].values()]
    raise NetworkError(f"channel {channel!r} is not a channel of this network (channels: {names(info)})")


def record_default(info: dict[str, Any]) -> dict[str, Any]:
    """`info["channels"]`, with the default channel's entry added when a network.json from before channels
    were recorded lacks it (every org of `orgs` is on it then)."""
    default = info.get("channel", CHANNEL)
    if default not in info.get("channels", {}):
        orgs = members({k: v for k, v in info.items() if k != "channels"})
        info.setdefault("channels", {})[default] = {"orgs": orgs}
    return info["channels"]


def member_orgs(layout: Layout, info: dict[str, Any], channel: str | None = None) -> list[PeerOrg]:
    """The running network's orgs (Layout.orgs) that are on `channel`."""
    on = set(members(info, channel))
    return [o for o in layout.orgs if o.mspid in on]


# ---- the profile (pure: unit-tested without Fabric) ----


def policy_rule(mspids: Sequence[str], role: str, need: int) -> str:
    """A configtxgen signature rule: AND when all must sign, OR when one, else OutOf(need, ...)."""
    principals = ", ".join(f"'{m}.{role}'" for m in mspids)
    if need == len(mspids):
        return f"AND({principals})"
    if need == 1:
        return f"OR({principals})"
    return f"OutOf({need}, {principals})"


def endorsement_policy(business: Sequence[str]) -> str:
    """The chaincode definition's signature policy on a channel: any business party's peer, written as
    `billing`'s (network/layout.py ENDORSEMENT_POLICY)."""
    return "OR(" + ",".join(f"'{m}.peer'" for m in business) + ")"


def channel_profile(
    doc: dict[str, Any], organizations: Sequence[dict[str, Any]], business: Sequence[str]
) -> dict[str, Any]:
    """`billing`'s profile from the rendered configtx.yaml `doc` with `organizations` (configtx org entries)
    as the Application orgs and the member policies over `business` (MSP ids)."""
    if not business:
        raise ChannelRefused("a channel needs at least one business party (an org that endorses)")
    profile = copy.deepcopy(doc["Profiles"][PROFILE])
    application = profile["Application"]
    application["Organizations"] = [copy.deepcopy(o) for o in organizations]
    need = membership.majority(len(business))
    policies = application["Policies"]
    policies["Admins"] = {"Type": "Signature", "Rule": policy_rule(business, "admin", need)}
    policies["LifecycleEndorsement"] = {"Type": "Signature", "Rule": policy_rule(business, "peer", need)}
    policies["Endorsement"] = {"Type": "Signature", "Rule": policy_rule(business, "peer", 1)}
    return profile


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise ChannelRefused(
            f"channel name {name!r}: use lower-case letters, digits, '.' and '-', starting with a letter, "
            "at most 249 characters (Fabric's channel-name rule)"
        )


def resolve(layout: Layout, orgs: Sequence[str]) -> list[PeerOrg]:
    """Org keys or MSP ids to the network's orgs, in the network's order; refuses unknown ones and fewer
    than two orgs."""
    by = {o.key: o for o in layout.orgs} | {o.mspid: o for o in layout.orgs}
    unknown = [o for o in orgs if o not in by]
    if unknown:
        known = ", ".join(o.key for o in layout.orgs)
        raise ChannelRefused(f"unknown org(s) {unknown}: this network's peer orgs are {known}")
    chosen = {by[o].mspid for o in orgs}
    picked = [o for o in layout.orgs if o.mspid in chosen]
    if len(picked) < 2:
        raise ChannelRefused(f"a channel needs at least two peer orgs, got {[o.key for o in picked]}")
    if not any(o.endorses for o in picked):
        raise ChannelRefused("a channel needs at least one business party (an org that endorses)")
    return picked


def render_profile(layout: Layout, name: str, picked: Sequence[PeerOrg]) -> Path:
    """Write config/channels/NAME/configtx.yaml (profile PROFILE) and return its directory."""
    from network.orgs import org_definition

    doc = yaml.safe_load((layout.config_dir / "configtx.yaml").read_text())
    founding = {o["ID"]: o for o in doc["Organizations"]}
    organizations = [founding.get(o.mspid) or org_definition(layout, o) for o in picked]
    profile = channel_profile(doc, organizations, [o.mspid for o in picked if o.endorses])
    out = {
        "Organizations": [*doc["Organizations"], *(o for o in organizations if o["ID"] not in founding)],
        "Profiles": {PROFILE: profile},
    }
    work = layout.config_dir / "channels" / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "configtx.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    return work


# ---- add_channel ----


def add_channel(run_dir: Path, name: str, orgs: Sequence[str], *, timeout: float = 180.0) -> dict[str, Any]:
    """Create channel `name` with the peer orgs `orgs` (keys or MSP ids; the orderer org orders it) on the
    running network and commit the chaincode on it; return its network.json entry plus `created` (what
    this run did), `timings_seconds` and `rss_kb` of the nodes. Idempotent (see the module doc)."""
    from network.orgs import load_info, network_layout, write_info

    check_name(name)
    run_dir = run_dir.resolve()
    layout = network_layout(run_dir)
    info = load_info(run_dir)
    picked = resolve(layout, orgs)
    mspids = [o.mspid for o in picked]
    existing = info.get("channels", {}).get(name)
    if existing is None and name == info.get("channel", CHANNEL):
        existing = {"orgs": members(info)}
    if existing is not None and sorted(existing["orgs"]) != sorted(mspids):
        raise ChannelRefused(
            f"channel {name!r} exists with members {sorted(existing['orgs'])}, not {sorted(mspids)}"
        )
    business = [o.mspid for o in picked if o.endorses]
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    created: list[str] = []
    block = layout.config_dir / f"{name}.block"
    if not block.is_file():
        if _orderer_has(layout, name):  # made by an earlier run whose block file is gone: take the genesis
            _fetch_genesis(layout, picked[0], name, block)
        else:
            work = render_profile(layout, name, picked)
            env = base_env()
            env["FABRIC_CFG_PATH"] = str(work)
            tmp = block.with_suffix(".block.tmp")
            run(
                [str(layout.binary("configtxgen")), "-configPath", str(work), "-profile", PROFILE,
                 "-outputBlock", str(tmp), "-channelID", name],
                env,
            )  # fmt: skip
            tmp.replace(block)
            created.append("block")
    timings["genesis_block"] = time.monotonic() - t0
    nodes = recorded(layout.pids_dir)
    if not _orderer_has(layout, name):
        status, body = osnadmin(layout, "join", "--channelID", name, "--config-block", str(block))
        if status != 201:
            raise NetworkError(f"osnadmin channel join {name} answered {status}: {body}")
        created.append("orderer")
    wait_until(f"orderer channel {name} active", lambda: _orderer_active(layout, name), timeout, nodes)
    wait_until(
        f"orderer Raft leader for {name}",
        lambda: (
            metric(layout.orderer_operations_port, "consensus_etcdraft_is_leader", {"channel": name}) == 1
        ),
        timeout,
        nodes,
    )
    timings["orderer_joined"] = time.monotonic() - t0
    peer = str(layout.binary("peer"))
    for org in picked:
        env = peer_admin_env(layout, org)
        if name not in run([peer, "channel", "list"], env, timeout=30).split():
            run([peer, "channel", "join", "-b", str(block)], env, timeout=60)
            created.append(f"peer-{org.key}")
        wait_until(
            f"peer {org.key} has channel {name}",
            lambda e=env: channel_height(layout, e, name) >= 1,
            timeout,
            nodes,
        )
    timings["peers_joined"] = time.monotonic() - t0
    policy = endorsement_policy(business)
    created += _chaincode(layout, info, name, picked, policy, timeout)
    timings["chaincode_committed"] = time.monotonic() - t0
    discovery_ready = _wait_gossip(layout, name, picked, min(timeout, 60.0))
    timings["gossip"] = time.monotonic() - t0
    entry = {
        "orgs": mspids,
        "block": str(block),
        "profile": PROFILE,
        "endorsement_policy": policy,
        "sequence": committed_sequence(layout, picked[0], name),
        "package_id": info["chaincode"]["package_id"],
        "label": info["chaincode"]["label"],
        "discovery_ready": discovery_ready,
    }
    info = load_info(run_dir)  # re-read: only this channel's entry changes
    channels = record_default(info)
    if channels.get(name) != entry:
        channels[name] = entry
        write_info(run_dir, info)
    rss = {n.name: group_rss_kb(n.pid) for n in recorded(layout.pids_dir) if n.is_alive()}
    return {
        "name": name,
        **entry,
        "created": created,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        "rss_kb": rss,
    }


def _orderer_has(layout: Layout, name: str) -> bool:
    status, _ = osnadmin(layout, "list", "--channelID", name)
    return status == 200


def _orderer_active(layout: Layout, name: str) -> bool:
    status, body = osnadmin(layout, "list", "--channelID", name)
    return status == 200 and isinstance(body, dict) and body.get("status") == "active"


def _fetch_genesis(layout: Layout, org: PeerOrg, name: str, out: Path) -> None:
    tmp = out.with_suffix(".block.tmp")
    run(
        [
            str(layout.binary("peer")),
            "channel",
            "fetch",
            "0",
            str(tmp),
            "-c",
            name,
            *orderer_tls_args(layout),
        ],
        peer_admin_env(layout, org),
        timeout=60,
    )
    tmp.replace(out)


def _chaincode(
    layout: Layout, info: dict[str, Any], name: str, picked: Sequence[PeerOrg], policy: str, timeout: float
) -> list[str]:
    """Install, approve (sequence 1, the running package), commit; return what was done."""
    done: list[str] = []
    cc = info["chaincode"]
    peer = str(layout.binary("peer"))
    package = Path(cc.get("package_file") or layout.config_dir / f"{cc['label']}.tar.gz")
    for org in picked:
        env = peer_admin_env(layout, org)
        if cc["package_id"] not in run([peer, "lifecycle", "chaincode", "queryinstalled", "-O", "json"], env):
            run([peer, "lifecycle", "chaincode", "install", str(package)], env, timeout=timeout)
            done.append(f"install-{org.key}")
    provider = next((o for o in picked if o.endorses), picked[0])
    if _committed(layout, provider, name):
        return done
    definition = definition_args(name, cc["name"], str(cc["version"]), 1, policy)
    approved = approvals(layout, provider, definition)
    for org in picked:
        if approved.get(org.mspid):
            continue
        approve_definition(layout, org, definition, cc["package_id"], timeout,
                           what=f"approveformyorg {org.key} on {name}")
        done.append(f"approve-{org.key}")
    wait_until(
        f"commit readiness on {name} (all members approved)",
        lambda: all(approvals(layout, provider, definition).get(o.mspid) for o in picked),
        timeout,
    )
    commit_definition(
        layout, provider, definition, [o for o in picked if o.endorses], timeout,
        what=f"commit chaincode definition on {name}", committed=lambda: _committed(layout, provider, name),
    )
    done.append("commit")
    for org in picked:
        wait_until(
            f"chaincode committed on {name} at peer {org.key}",
            lambda o=org: _committed(layout, o, name),
            timeout,
        )
    return done


def _committed(layout: Layout, org: PeerOrg, name: str) -> bool:
    try:
        return (committed_sequence(layout, org, name) or 0) >= 1
    except NetworkError:  # querycommitted: "namespace billing is not defined" until the commit
        return False


def _wait_gossip(layout: Layout, name: str, picked: Sequence[PeerOrg], timeout: float) -> bool:
    others = len(picked) - 1
    try:
        for org in picked:
            wait_until(
                f"peer {org.key} gossip membership of {name}",
                lambda o=org: (
                    (metric(o.operations_port, "gossip_membership_total_peers_known", {"channel": name}) or 0)
                    >= others
                ),
                timeout,
                [],
            )
    except NetworkError:
        return False
    return True
