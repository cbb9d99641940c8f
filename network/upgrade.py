"""Upgrade the chaincode live: `ledgerhub network upgrade-chaincode` (ADR 0055).

The Fabric lifecycle, with the chaincode as a service (CCaaS):

1. a new package: label `billing_<n+1>`, its own server address (the new code runs beside the old one);
2. every peer installs it; the new chaincode server starts with the new package id and listens;
3. every org approves definition n+1 (version, sequence n+1, the same endorsement policy) for the new
   package: the LifecycleEndorsement policy needs provider AND customer (a majority of the business
   parties once orgs joined, ADR 0063); the others approve so their peers run the new package too (a peer
   runs the package its own org approved). With `approvers`, only those orgs approve before the commit
   and the rest right after it;
4. the provider commits it, endorsed by the peers of a smallest set of approving orgs that satisfies
   LifecycleEndorsement (network/membership.py);
5. each peer switches when it commits the block holding the definition. Until then it keeps calling
   the old server; a transaction endorsed on the old definition that is validated after the switch is
   invalidated (Fabric puts the definition's version into every invocation's read set), and the hub's
   Fabric client endorses such a transaction again (a stale read, `STALE_READ_CODES`): no reading is
   refused or lost, and the contract's idempotent functions apply nothing twice;
6. once every peer runs n+1, the old server is stopped (when the network started it) and network.json
   names the new package, server and sequence (`chaincode.previous` keeps the earlier ones).

World state is not migrated: the new version reads what the old one wrote (ADR 0055: new fields get
defaults on read).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from network import ccpackage, channels, configupdate, membership
from network.admin import committed_sequence, peer_admin_env
from network.cctls import ChaincodeTLS
from network.deploy import (
    approvals,
    approve_definition,
    chaincode_server_env,
    commit_definition,
    definition_args,
)
from network.layout import CHANNEL, NETWORK_DIR, Layout
from network.orgs import load_info, network_layout, write_info
from network.procs import NetworkError, port_open, recorded, run, start, stop, wait_until

DEFAULT_SERVER: tuple[str, ...] = (sys.executable, "-m", "chaincode")
MAX_SEQUENCE = 9  # server ports base+40 .. base+48 stay inside the network's port block


def _tls(layout: Layout, info: dict[str, Any]) -> ChaincodeTLS | None:
    if not info["chaincode"].get("server_tls"):
        return None
    d = layout.crypto_dir / "chaincode"
    return ChaincodeTLS(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def _release(info: dict[str, Any]) -> int:
    """The highest package release on the network (label `billing_<n>`), over every channel's package."""
    labels = [info["chaincode"]["label"], *(c.get("label", "") for c in info.get("channels", {}).values())]
    return max(int(lbl.rsplit("_", 1)[1]) for lbl in labels if lbl.rsplit("_", 1)[-1].isdigit())


def server_name(label: str) -> str:
    """The chaincode server process of a package: `chaincode` for the first (`up`), `chaincode-<n>` after."""
    n = int(label.rsplit("_", 1)[1])
    return "chaincode" if n == 1 else f"chaincode-{n}"


def upgrade_chaincode(
    run_dir: Path,
    *,
    version: str | None = None,
    address: str | None = None,
    server_command: Sequence[str] | None = None,
    start_server: bool = True,
    stop_previous: bool = True,
    timeout: float = 180.0,
    approvers: Sequence[str] | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    """Approve and commit the next sequence of the chaincode for a new package on every channel of the
    network (or only `channel`) and return the new `chaincode` section of network.json (plus
    `timings_seconds` and `channels`: each upgraded channel's sequence, approvals and commit endorsers).
    `server_command`: the new code's server (default `python -m chaincode`), started with the new package id
    unless `start_server` is False; the one server serves every channel. `approvers` (org keys; default
    every org): the orgs that approve before the commit, which the LifecycleEndorsement policy of each
    channel must be satisfied by (their peers endorse the commit); the others approve the committed
    definition right after it, so their peers run the new package too. Each channel's definition is
    approved by that channel's members only, at that channel's own next sequence."""
    run_dir = run_dir.resolve()
    layout = network_layout(run_dir)
    info = load_info(run_dir)
    cc = info["chaincode"]
    targets = channels.names(info) if channel is None else [channel]
    unknown_channels = [c for c in targets if c not in channels.names(info)]
    if unknown_channels:
        raise NetworkError(f"channel {unknown_channels[0]!r} is not a channel of this network "
                           f"(channels: {channels.names(info)})")  # fmt: skip
    unknown = sorted(set(approvers or ()) - {o.key for o in layout.orgs})
    if unknown:
        raise NetworkError(f"approvers {unknown} are not orgs of this network")
    plans = []
    for name in targets:
        on = channels.member_orgs(layout, info, name)
        anchor = next(o for o in on if o.endorses)
        current = committed_sequence(layout, anchor, name) or 0
        if current + 1 > MAX_SEQUENCE:
            raise NetworkError(f"this dev network upgrades up to sequence {MAX_SEQUENCE} (channel {name})")
        plans.append((name, on, anchor, current + 1))
    release = _release(info) + 1
    if release > MAX_SEQUENCE:
        raise NetworkError(f"this dev network runs up to {MAX_SEQUENCE} chaincode packages")
    version = version or str(release)
    label = f"{cc['name']}_{release}"
    address = address or f"127.0.0.1:{layout.default_chaincode_port + release - 1}"
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    tls = _tls(layout, info)
    package, package_id = ccpackage.write_package(layout.config_dir, label, address, tls)
    peer = str(layout.binary("peer"))
    for org in {o.key: o for plan in plans for o in plan[1]}.values():
        env = peer_admin_env(layout, org)
        if package_id not in run([peer, "lifecycle", "chaincode", "queryinstalled", "-O", "json"], env):
            run([peer, "lifecycle", "chaincode", "install", str(package)], env, timeout=timeout)
    timings["installed"] = time.monotonic() - t0
    server_env = chaincode_server_env(package_id, address, tls)
    if start_server:
        env = {**os.environ, **server_env}
        name = server_name(label)
        server = start(
            name,
            list(server_command or DEFAULT_SERVER),
            env,
            layout.pids_dir,
            layout.logs_dir,
            cwd=NETWORK_DIR.parent,
        )
        host, _, port = address.rpartition(":")
        wait_until(
            f"chaincode server {name} on {address}", lambda: port_open(int(port), host), timeout, [server]
        )
    timings["server_listening"] = time.monotonic() - t0
    done: dict[str, Any] = {}
    for name, on, anchor, sequence in plans:
        policy = (info.get("channels", {}).get(name) or {}).get("endorsement_policy") or cc[
            "endorsement_policy"
        ]
        first = [o for o in on if approvers is None or o.key in approvers]
        done[name] = _upgrade_channel(
            layout, name, on, first, anchor, sequence, version, policy, package_id, cc["name"], timeout
        )
        timings[f"committed_everywhere_{name}"] = time.monotonic() - t0
    default = info.get("channel", CHANNEL)
    info = load_info(run_dir)
    entries = channels.record_default(info)
    # every package some channel ran before this upgrade, by label (its server is `server_name(label)`)
    before = {
        cc["label"]: cc["package_id"],
        **{e["label"]: e["package_id"] for e in entries.values() if "label" in e},
    }
    for name, result in done.items():
        entries[name].update(sequence=result["sequence"], package_id=package_id, label=label)
    previous = {k: cc[k] for k in ("label", "version", "sequence", "package_id", "server_address")}
    if default in done:
        cc.update(
            label=label,
            version=version,
            sequence=done[default]["sequence"],
            package_id=package_id,
            package_file=str(package),
            server_address=address,
            server_env=server_env,
            server_started_by_network=start_server,
            previous=[*cc.get("previous", []), previous],
        )
        info["chaincode"] = cc
    in_use = {
        info["chaincode"]["package_id"],
        *(e.get("package_id", cc["package_id"]) for e in entries.values()),
    }
    if stop_previous:
        retire = {server_name(lbl) for lbl, package in before.items() if package not in in_use}
        for node in recorded(layout.pids_dir):
            if node.name in retire:
                if node.is_alive() and not stop(node):
                    raise NetworkError(f"the previous chaincode server {node.name} did not stop")
                (layout.pids_dir / f"{node.name}.json").unlink()  # retired: `status` no longer lists it
    write_info(run_dir, info)
    answer = {**info["chaincode"], "timings_seconds": {k: round(v, 2) for k, v in timings.items()}}
    answer.update(label=label, version=version, package_id=package_id, server_address=address)
    if default in done:
        answer["approvals_at_commit"] = done[default]["approvals_at_commit"]
        answer["commit_endorsed_by"] = done[default]["commit_endorsed_by"]
    answer["channels"] = done
    return answer


def _upgrade_channel(
    layout: Layout,
    name: str,
    on: list[Any],
    first: list[Any],
    anchor: Any,
    sequence: int,
    version: str,
    policy: str,
    package_id: str,
    cc_name: str,
    timeout: float,
) -> dict[str, Any]:
    """One channel: its members approve `sequence` for the package, the anchor org commits, all see it."""
    definition = definition_args(name, cc_name, version, sequence, policy)

    def approve(org: Any) -> None:
        approve_definition(layout, org, definition, package_id, timeout,
                           what=f"approveformyorg {org.key} sequence {sequence} on {name}")

    config = configupdate.config_of(configupdate.fetch_config_block(layout, anchor, name))
    try:
        needed = membership.signers(config, ["Application"], "LifecycleEndorsement", [o.mspid for o in first])
    except NetworkError:  # the approvers named are not enough members of this channel: all of them approve
        first = list(on)
        needed = membership.signers(config, ["Application"], "LifecycleEndorsement", [o.mspid for o in first])
    by_msp = {o.mspid: o for o in first}
    for org in first:
        approve(org)
    approved = approvals(layout, anchor, definition)

    def committed() -> bool:
        try:
            return committed_sequence(layout, anchor, name) == sequence
        except NetworkError:
            return False

    # the peer endorsing a commit must belong to an org that approved it
    commit_definition(
        layout, anchor, definition, [by_msp[msp] for msp in needed], timeout,
        what=f"commit chaincode sequence {sequence} on {name}", committed=committed,
    )
    for org in on:
        if org not in first:
            approve(org)
    for org in on:
        wait_until(
            f"sequence {sequence} committed on {name} at peer {org.key}",
            lambda o=org: committed_sequence(layout, o, name) == sequence,
            timeout,
        )
    return {"sequence": sequence, "approvals_at_commit": approved, "commit_endorsed_by": needed}


def _main() -> None:  # pragma: no cover - `python -m network.upgrade RUN_DIR`
    print(json.dumps(upgrade_chaincode(Path(sys.argv[1])), indent=2))


if __name__ == "__main__":
    _main()
