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

from network import ccpackage, configupdate, membership
from network.admin import committed_sequence, orderer_tls_args, peer_admin_env
from network.cctls import ChaincodeTLS
from network.deploy import chaincode_server_env, retry_transient
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
) -> dict[str, Any]:
    """Approve and commit the next sequence of the chaincode for a new package and return the new
    `chaincode` section of network.json (plus `timings_seconds`). `server_command`: the new code's server
    (default `python -m chaincode`), started with the new package id unless `start_server` is False.
    `approvers` (org keys; default every org): the orgs that approve before the commit, which the
    LifecycleEndorsement policy must be satisfied by (their peers endorse the commit); the others approve
    the committed definition right after it, so their peers run the new package too."""
    run_dir = run_dir.resolve()
    layout = network_layout(run_dir)
    info = load_info(run_dir)
    cc = info["chaincode"]
    provider = layout.org("provider")
    current = committed_sequence(layout, provider) or 0
    sequence = current + 1
    if sequence > MAX_SEQUENCE:
        raise NetworkError(f"this dev network upgrades up to sequence {MAX_SEQUENCE}")
    first = [o for o in layout.orgs if approvers is None or o.key in approvers]
    unknown = sorted(set(approvers or ()) - {o.key for o in layout.orgs})
    if unknown:
        raise NetworkError(f"approvers {unknown} are not orgs of this network")
    version = version or str(sequence)
    label = f"{cc['name']}_{sequence}"
    address = address or f"127.0.0.1:{layout.default_chaincode_port + sequence - 1}"
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    tls = _tls(layout, info)
    package, package_id = ccpackage.write_package(layout.config_dir, label, address, tls)
    peer = str(layout.binary("peer"))
    for org in layout.orgs:
        env = peer_admin_env(layout, org)
        if package_id not in run([peer, "lifecycle", "chaincode", "queryinstalled", "-O", "json"], env):
            run([peer, "lifecycle", "chaincode", "install", str(package)], env, timeout=timeout)
    timings["installed"] = time.monotonic() - t0
    server_env = chaincode_server_env(package_id, address, tls)
    if start_server:
        env = {**os.environ, **server_env}
        name = f"chaincode-{sequence}"
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
    definition = [
        "--channelID", CHANNEL, "--name", cc["name"], "--version", version,
        "--sequence", str(sequence), "--signature-policy", cc["endorsement_policy"],
    ]  # fmt: skip

    def approve(org: Any) -> None:
        retry_transient(
            f"approveformyorg {org.key} sequence {sequence}",
            lambda: run(
                [
                    peer,
                    "lifecycle",
                    "chaincode",
                    "approveformyorg",
                    *orderer_tls_args(layout),
                    *definition,
                    "--package-id",
                    package_id,
                ],
                peer_admin_env(layout, org),
                timeout=60,
            ),
            timeout,
            [],
            done_if=lambda exc: "unchanged content" in str(exc),
        )

    for org in first:
        approve(org)
    timings["approved"] = time.monotonic() - t0
    config = configupdate.config_of(configupdate.fetch_config_block(layout, provider))
    by_msp = {o.mspid: o for o in first}
    needed = membership.signers(config, ["Application"], "LifecycleEndorsement", list(by_msp))
    readiness = run(
        [peer, "lifecycle", "chaincode", "checkcommitreadiness", *definition, "-O", "json"],
        peer_admin_env(layout, provider),
        timeout=60,
    )
    approvals = json.loads(readiness[readiness.index("{") : readiness.rindex("}") + 1]).get("approvals", {})
    endorsers: list[str] = []
    for msp in needed:  # the peer endorsing a commit must belong to an org that approved it
        org = by_msp[msp]
        endorsers += ["--peerAddresses", org.endpoint, "--tlsRootCertFiles", str(layout.peer_tls_ca(org))]

    def committed() -> bool:
        try:
            return committed_sequence(layout, provider) == sequence
        except NetworkError:
            return False

    retry_transient(
        f"commit chaincode sequence {sequence}",
        lambda: run(
            [peer, "lifecycle", "chaincode", "commit", *orderer_tls_args(layout), *definition, *endorsers],
            peer_admin_env(layout, provider),
            timeout=60,
        ),
        timeout,
        [],
        done_if=lambda _exc: committed(),
    )
    for org in layout.orgs:
        if org not in first:
            approve(org)
    for org in layout.orgs:
        wait_until(
            f"sequence {sequence} committed on peer {org.key}",
            lambda o=org: committed_sequence(layout, o) == sequence,
            timeout,
        )
    timings["committed_everywhere"] = time.monotonic() - t0
    previous = {k: cc[k] for k in ("label", "version", "sequence", "package_id", "server_address")}
    if stop_previous:
        old_names = {"chaincode", f"chaincode-{current}"}
        for node in recorded(layout.pids_dir):
            if node.name in old_names:
                if node.is_alive() and not stop(node):
                    raise NetworkError(f"the previous chaincode server {node.name} did not stop")
                (layout.pids_dir / f"{node.name}.json").unlink()  # retired: `status` no longer lists it
    cc.update(
        label=label,
        version=version,
        sequence=sequence,
        package_id=package_id,
        package_file=str(package),
        server_address=address,
        server_env=server_env,
        server_started_by_network=start_server,
        previous=[*cc.get("previous", []), previous],
    )
    info["chaincode"] = cc
    write_info(run_dir, info)
    return {
        **cc,
        "approvals_at_commit": approvals,
        "commit_endorsed_by": needed,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def _main() -> None:  # pragma: no cover - `python -m network.upgrade RUN_DIR`
    print(json.dumps(upgrade_chaincode(Path(sys.argv[1])), indent=2))


if __name__ == "__main__":
    _main()
