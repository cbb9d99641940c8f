"""An org joins the running network: `ledgerhub network add-org NAME` (ADR 0054).

The steps a consortium runs, in order, each skipped when an earlier (interrupted) run did it already, so a
second `add-org` of the same name finishes the job instead of failing half way:

1. crypto material: `cryptogen extend` with one more peer org (`<name>.ledgerhub.local`, MSP `<Name>MSP`,
   one peer, one user, NodeOUs); on an --hsm network the peer's signing key goes on a token of its own
   (network/hsm.py, the same as the other peers);
2. the org's channel config group: `configtxgen` renders it (MSP definition, Readers/Writers/Admins/
   Endorsement policies, anchor peer) into a throw-away block, from which the group is taken;
3. the channel config update adding that group under /Channel/Application and, in the same update, the
   org to the channel's explicit member policies (Application Admins and LifecycleEndorsement: a majority
   of the members; Endorsement: any member; network/membership.py, ADR 0063), signed by the admins the
   Application group's mod_policy (`Admins`, before the update) requires (network/configupdate.py);
4. its peer starts, joins `billing` from the genesis block and catches up with the provider's peer;
5. the peer installs the current chaincode package (the same CCaaS connection, the same server) and the
   org approves the committed definition at its current sequence, so its peer runs the chaincode;
6. gossip: the existing peers learn the new one (gateway discovery needs it to plan endorsements);
7. network.json lists the org (peer, admin, client), so a hub opened on it has an identity and a gateway
   for the org.

Nothing about existing contracts changes: their key-level policies name only their own parties.

`add-org NAME --own-channel` (ADR 0067) runs steps 1 and 4 without `billing` (no config update, no join) and
then creates channel `billing-NAME` with the provider, the org and the auditor (network/channels.py).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml
from fabric_protos.common import common_pb2, configtx_pb2

from network import channels, configupdate, hsm, membership
from network.admin import base_env, channel_height, peer_admin_env, peer_node_env
from network.deploy import approve_definition, definition_args
from network.layout import (
    CHANNEL,
    JOINED_ORGS_FILE,
    MAX_JOINED_ORGS,
    NETWORK_DIR,
    Layout,
    PeerOrg,
    render,
)
from network.procs import NetworkError, healthz, metric, port_open, recorded, run, start, wait_until

NAME = re.compile(r"^[a-z][a-z0-9]{1,19}$")


def network_layout(run_dir: Path) -> Layout:
    """The layout of the network in `run_dir`, on the port base its network.json records."""
    from network.manage import make_layout

    info = load_info(run_dir)
    return make_layout(run_dir, info["port_base"])


def load_info(run_dir: Path) -> dict[str, Any]:
    file = run_dir / "network.json"
    if not file.is_file():
        raise NetworkError(f"no network.json in {run_dir}: bring the network up first")
    return json.loads(file.read_text())


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    file = run_dir / "network.json"
    tmp = file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(file)


def add_org(run_dir: Path, name: str, *, own_channel: bool = False, timeout: float = 180.0) -> dict[str, Any]:
    """Add org `name` (lower case letters and digits, 2-20) to the running network; return its entry in
    network.json plus `timings_seconds` of each step.

    `own_channel` (ADR 0067): the org gets its crypto material and its peer but no membership of `billing`;
    instead channel `billing-<name>` is created with the provider, the org and the auditor
    (network/channels.py), so it sees nothing of `billing` and `billing`'s members nothing of it."""
    if not NAME.match(name):
        raise NetworkError(
            f"org name {name!r}: use 2-20 lower-case letters and digits, starting with a letter"
        )
    run_dir = run_dir.resolve()
    layout = network_layout(run_dir)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    org = _register(layout, name, own_channel)
    layout = network_layout(run_dir)
    _crypto(layout, org)
    timings["crypto"] = time.monotonic() - t0
    if own_channel:
        return _add_on_own_channel(run_dir, layout, org, t0, timings, timeout)
    config = configupdate.config_of(configupdate.fetch_config_block(layout, layout.org("provider")))
    update: dict[str, Any] | None = None
    if org.mspid not in config.channel_group.groups["Application"].groups:
        group = _org_group(layout, org)

        def add(cfg: configtx_pb2.Config) -> None:
            cfg.channel_group.groups["Application"].groups[org.mspid].CopyFrom(group)
            membership.set_member_policies(cfg, add=org.mspid)  # a full member (ADR 0063)

        update = configupdate.apply(
            layout, add, policy_group=["Application"], name=f"add-{org.key}", timeout=timeout
        )
    timings["channel_config_updated"] = time.monotonic() - t0
    node = _start_peer(layout, org, timeout)
    timings["peer_healthy"] = time.monotonic() - t0
    _join(layout, org, node, timeout)
    timings["peer_caught_up"] = time.monotonic() - t0
    info = load_info(run_dir)
    _approve(layout, org, info, timeout)
    timings["chaincode_approved"] = time.monotonic() - t0
    billing = channels.record_default(info)[CHANNEL]
    billing["orgs"] = [*(m for m in billing["orgs"] if m != org.mspid), org.mspid]
    _wait_gossip(layout, channels.member_orgs(layout, info, CHANNEL), timeout)
    timings["gossip"] = time.monotonic() - t0
    _refresh_orgs(layout, info)
    return {
        **info["orgs"][org.key],
        "key": org.key,
        "config_update": update,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def _refresh_orgs(layout: Layout, info: dict[str, Any]) -> None:
    """network.json lists every org of the layout (identities, peer) and the HSM state."""
    from network.admin import describe

    fresh = describe(layout, info["chaincode"]["package_id"], info["chaincode"]["server_env"])
    info["orgs"] = fresh["orgs"]
    info["hsm"] = hsm.describe(layout.run_dir)
    write_info(layout.run_dir, info)


def _add_on_own_channel(
    run_dir: Path, layout: Layout, org: PeerOrg, t0: float, timings: dict[str, float], timeout: float
) -> dict[str, Any]:
    """add_org(own_channel=True) after the crypto step: peer up, network.json lists the org (not on
    `billing`), then channel billing-<name> with the provider, the org and the auditor."""
    _start_peer(layout, org, timeout)
    timings["peer_healthy"] = time.monotonic() - t0
    info = load_info(run_dir)
    channels.record_default(info)  # `billing` keeps its members: this org is not one
    _refresh_orgs(layout, info)
    created = channels.add_channel(
        run_dir, f"{CHANNEL}-{org.key}", ["provider", org.key, "auditor"], timeout=timeout
    )
    for step, seconds in created["timings_seconds"].items():
        timings[f"channel_{step}"] = timings["peer_healthy"] + seconds
    info = load_info(run_dir)
    return {
        **info["orgs"][org.key],
        "key": org.key,
        "config_update": None,
        "channel": created["name"],
        "channel_created": created["created"],
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def _register(layout: Layout, name: str, own_channel: bool = False) -> PeerOrg:
    """The org's entry in orgs.json (its ports follow from its slot); an existing entry is reused."""
    if name in ("provider", "customer", "auditor", "orderer"):
        raise NetworkError(f"org {name!r} is one of the founding orgs")
    file = layout.run_dir / JOINED_ORGS_FILE
    entries = json.loads(file.read_text()) if file.is_file() else []
    for entry in entries:
        if entry["key"] == name and entry.get("removed"):
            raise NetworkError(f"org {name!r} was removed from this network; its name is not reused")
        if entry["key"] == name:
            if bool(entry.get("own_channel")) != own_channel:
                where = "on a channel of its own" if entry.get("own_channel") else f"into {CHANNEL}"
                raise NetworkError(f"org {name!r} was added {where}: run add-org the same way again")
            return layout.org(name)
    if len(entries) >= MAX_JOINED_ORGS:
        raise NetworkError(f"this dev network has room for {MAX_JOINED_ORGS} joined orgs")
    entry = {
        "key": name,
        "mspid": f"{name.capitalize()}MSP",
        "domain": f"{name}.ledgerhub.local",
        "slot": len(entries),
        **({"own_channel": True} if own_channel else {}),
    }
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps([*entries, entry], indent=2))
    tmp.replace(file)
    org = Layout(layout.run_dir, layout.port_base, layout.bin_dir).org(name)
    busy = [p for p in (org.port, org.chaincode_port, org.operations_port) if port_open(p)]
    if busy:
        file.write_text(json.dumps(entries, indent=2))
        raise NetworkError(f"ports {busy} for org {name} are in use")
    return org


def _crypto(layout: Layout, org: PeerOrg) -> None:
    if layout.user_msp_dir(org, "Admin").is_dir():
        return
    spec = {
        "PeerOrgs": [
            {
                "Name": org.key.capitalize(),
                "Domain": org.domain,
                "EnableNodeOUs": True,
                "Specs": [{"Hostname": "peer0", "SANS": ["127.0.0.1", "localhost"]}],
                "Users": {"Count": 1},
            }
        ]
    }
    file = layout.config_dir / f"crypto-{org.key}.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    run(
        [str(layout.binary("cryptogen")), "extend", "--input", str(layout.crypto_dir), "--config", str(file)],
        base_env(),
    )
    if hsm.enabled(layout.run_dir):
        _peer_config(layout, org)
        hsm.provision(layout, only=[f"peer-{org.key}"])


def org_definition(layout: Layout, org: PeerOrg) -> dict[str, Any]:
    """The org's configtx.yaml `Organizations` entry (MSP dir, its four policies, anchor peer): the same
    shape as the founding orgs' in network/configtx.yaml."""
    m = org.mspid
    return {
        "Name": m,
        "ID": m,
        "MSPDir": str(layout.org_dir(org) / "msp"),
        "Policies": {
            "Readers": {"Type": "Signature", "Rule": f"OR('{m}.admin', '{m}.peer', '{m}.client')"},
            "Writers": {"Type": "Signature", "Rule": f"OR('{m}.admin', '{m}.client')"},
            "Admins": {"Type": "Signature", "Rule": f"OR('{m}.admin')"},
            "Endorsement": {"Type": "Signature", "Rule": f"OR('{m}.peer')"},
        },
        "AnchorPeers": [{"Host": "127.0.0.1", "Port": org.port}],
    }


def _org_group(layout: Layout, org: PeerOrg) -> configtx_pb2.ConfigGroup:
    """The org's config group as configtxgen renders it for a channel with this org in it."""
    doc = yaml.safe_load((layout.config_dir / "configtx.yaml").read_text())
    m = org.mspid
    definition = org_definition(layout, org)
    profile = dict(doc["Profiles"]["BillingChannel"])
    profile["Application"] = {**profile["Application"], "Organizations": [definition]}
    doc["Organizations"] = [*doc["Organizations"], definition]
    doc["Profiles"] = {"JoinOrg": profile}
    work = layout.config_dir / f"join-{org.key}"
    work.mkdir(exist_ok=True)
    (work / "configtx.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    env = base_env()
    env["FABRIC_CFG_PATH"] = str(work)
    block_file = work / "org.block"
    run(
        [
            str(layout.binary("configtxgen")),
            "-configPath",
            str(work),
            "-profile",
            "JoinOrg",
            "-outputBlock",
            str(block_file),
            "-channelID",
            "joinorg",
        ],
        env,
    )
    config = configupdate.config_of(common_pb2.Block.FromString(block_file.read_bytes()))
    return config.channel_group.groups["Application"].groups[m]


def _peer_config(layout: Layout, org: PeerOrg) -> None:
    d = layout.peer_dir(org)
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "core.yaml").is_file():
        (d / "core.yaml").write_text(render(NETWORK_DIR / "core.yaml", layout.peer_values(org)))


def _start_peer(layout: Layout, org: PeerOrg, timeout: float) -> Any:
    _peer_config(layout, org)
    name = f"peer-{org.key}"
    running = [n for n in recorded(layout.pids_dir) if n.name == name and n.is_alive()]
    node = (
        running[0]
        if running
        else start(
            name,
            [str(layout.binary("peer")), "node", "start"],
            peer_node_env(layout, org),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.peer_dir(org),
        )
    )
    wait_until(f"peer {org.key} /healthz", lambda: healthz(org.operations_port), timeout, [node])
    # /healthz answers before the peer's gRPC listener is up: the admin CLI's next call would be refused
    wait_until(f"peer {org.key} gRPC on {org.endpoint}", lambda: port_open(org.port), timeout, [node])
    return node


def _join(layout: Layout, org: PeerOrg, node: Any, timeout: float) -> None:
    env = peer_admin_env(layout, org)
    listed = run([str(layout.binary("peer")), "channel", "list"], env, timeout=30)
    if CHANNEL not in listed.split():
        run([str(layout.binary("peer")), "channel", "join", "-b", str(layout.channel_block)], env, timeout=60)
    target = channel_height(layout, peer_admin_env(layout, layout.org("provider")))
    wait_until(
        f"peer {org.key} caught up to block {target}",
        lambda: channel_height(layout, env) >= target,
        timeout,
        [node],
    )


def _approve(layout: Layout, org: PeerOrg, info: dict[str, Any], timeout: float) -> None:
    """Install the package the channel runs now and approve the committed definition for the org."""
    cc = info["chaincode"]
    package = Path(cc.get("package_file") or layout.config_dir / f"{cc['label']}.tar.gz")
    peer = str(layout.binary("peer"))
    env = peer_admin_env(layout, org)
    installed = run([peer, "lifecycle", "chaincode", "queryinstalled", "-O", "json"], env, timeout=60)
    if cc["package_id"] not in installed:
        run([peer, "lifecycle", "chaincode", "install", str(package)], env, timeout=timeout)
    if _approved(layout, env, cc):
        return
    definition = definition_args(
        CHANNEL, cc["name"], str(cc["version"]), cc["sequence"], cc["endorsement_policy"]
    )
    approve_definition(layout, org, definition, cc["package_id"], timeout)


def _approved(layout: Layout, env: dict[str, str], cc: dict[str, Any]) -> bool:
    """Has the org approved the current definition for the current package already (an earlier run)?"""
    try:
        out = run(
            [str(layout.binary("peer")), "lifecycle", "chaincode", "queryapproved", "--channelID", CHANNEL,
             "--name", cc["name"], "--sequence", str(cc["sequence"]), "-O", "json"],
            env,
            timeout=30,
        )  # fmt: skip
    except NetworkError:  # nothing approved at that sequence yet
        return False
    return cc["package_id"] in out


def _wait_gossip(layout: Layout, on_channel: list[PeerOrg], timeout: float) -> None:
    others = len(on_channel) - 1
    for o in on_channel:
        wait_until(
            f"peer {o.key} gossip membership of {CHANNEL} ({others} others)",
            lambda o=o: (
                (metric(o.operations_port, "gossip_membership_total_peers_known", {"channel": CHANNEL}) or 0)
                >= others
            ),
            timeout,
            [],
        )
