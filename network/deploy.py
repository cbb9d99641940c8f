"""The chaincode on the dev network: its first deployment through the Fabric lifecycle (package, install on
every peer, every org approves, the provider commits), the chaincode server's environment and process, and the
retry of CLI steps that submit a transaction while ordering is not ready. Split out of network/manage.py
(which brings the nodes and the channel up); network/upgrade.py runs the later sequences.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from network import ccpackage
from network.admin import committed_sequence, orderer_tls_args, peer_admin_env
from network.cctls import ChaincodeTLS
from network.layout import (
    CHAINCODE_LABEL,
    CHAINCODE_NAME,
    CHAINCODE_SEQUENCE,
    CHAINCODE_VERSION,
    CHANNEL,
    ENDORSEMENT_POLICY,
    NETWORK_DIR,
    Layout,
    PeerOrg,
)
from network.procs import NetworkError, NodeProcess, run, start, wait_until

DEFAULT_CHAINCODE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "chaincode")


def deploy_chaincode(
    layout: Layout, address: str, tls: ChaincodeTLS | None, nodes: list[NodeProcess], timeout: float
) -> str:
    pkg, package_id = ccpackage.write_package(layout.config_dir, CHAINCODE_LABEL, address, tls)
    peer = str(layout.binary("peer"))
    provider = layout.org("provider")
    calculated = (
        run(
            [peer, "lifecycle", "chaincode", "calculatepackageid", str(pkg)], peer_admin_env(layout, provider)
        )
        .strip()
        .splitlines()[-1]
    )
    if calculated != package_id:
        raise NetworkError(f"package id mismatch: peer says {calculated}, ccpackage computed {package_id}")
    definition = definition_args(
        CHANNEL, CHAINCODE_NAME, CHAINCODE_VERSION, CHAINCODE_SEQUENCE, ENDORSEMENT_POLICY
    )
    # Every peer gets the package, and every org approves it: the auditor's approval is not needed by the
    # LifecycleEndorsement policy (provider AND customer) but is what lets the auditor's own peer run
    # read-only queries of the chaincode (a peer runs the package its own org approved).
    for org in layout.orgs:
        run(
            [peer, "lifecycle", "chaincode", "install", str(pkg)],
            peer_admin_env(layout, org),
            timeout=timeout,
        )
    for org in layout.orgs:
        approve_definition(layout, org, definition, package_id, timeout, nodes)
    wait_until(
        "commit readiness (all orgs approved)",
        lambda: all(approvals(layout, provider, definition).get(o.mspid) for o in layout.orgs),
        timeout,
        nodes,
    )
    commit_definition(
        layout, provider, definition, [o for o in layout.orgs if o.endorses], timeout, nodes,
        what="commit chaincode definition", committed=lambda: _committed_quietly(layout, provider),
    )
    for org in layout.orgs:
        wait_until(
            f"chaincode committed on peer {org.key}",
            lambda o=org: committed_sequence(layout, o) == CHAINCODE_SEQUENCE,
            timeout,
            nodes,
        )
    return package_id


TRANSIENT = ("SERVICE_UNAVAILABLE", "no Raft leader", "connection refused", "timed out waiting for txid")


def retry_transient(
    what: str,
    action: Callable[[], object],
    timeout: float,
    nodes: list[NodeProcess],
    done_if: Callable[[NetworkError], bool] = lambda _exc: False,
) -> None:
    """Run a CLI step that submits a transaction; repeat it only while it fails for a transient reason
    (ordering not ready, a commit event not seen in time). Any other failure is final at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except NetworkError as exc:
            if done_if(exc):
                return
            if not any(m in str(exc) for m in TRANSIENT) or time.monotonic() >= deadline:
                raise
            dead = [n.name for n in nodes if not n.is_alive()]
            if dead:
                raise NetworkError(f"{', '.join(dead)} exited during {what}") from exc
            time.sleep(0.5)


# --- the lifecycle steps of every chaincode definition (deploy, a joining org, a new channel, an upgrade)


def definition_args(channel: str, name: str, version: str, sequence: int, policy: str) -> list[str]:
    """The flags naming one chaincode definition (for approveformyorg, checkcommitreadiness and commit)."""
    return [
        "--channelID", channel, "--name", name, "--version", str(version),
        "--sequence", str(sequence), "--signature-policy", policy,
    ]  # fmt: skip


def approve_definition(
    layout: Layout, org: PeerOrg, definition: Sequence[str], package_id: str, timeout: float,
    nodes: Sequence[NodeProcess] = (), *, what: str | None = None,
) -> None:
    """`approveformyorg` as `org`'s admin; an approval an earlier attempt got through counts as done."""
    command = [
        str(layout.binary("peer")), "lifecycle", "chaincode", "approveformyorg", *orderer_tls_args(layout),
        *definition, "--package-id", package_id,
    ]  # fmt: skip
    retry_transient(
        what or f"approveformyorg {org.key}",
        lambda: run(command, peer_admin_env(layout, org), timeout=60),
        timeout,
        list(nodes),
        done_if=lambda exc: "unchanged content" in str(exc),
    )


def approvals(layout: Layout, org: PeerOrg, definition: Sequence[str]) -> dict[str, bool]:
    """Which orgs approved the definition (`checkcommitreadiness`, asked as `org`'s admin)."""
    out = run(
        [str(layout.binary("peer")), "lifecycle", "chaincode", "checkcommitreadiness", *definition, "-O",
         "json"],
        peer_admin_env(layout, org),
        timeout=60,
    )
    answer: dict[str, bool] = json.loads(out[out.index("{") : out.rindex("}") + 1]).get("approvals", {})
    return answer


def commit_definition(
    layout: Layout, anchor: PeerOrg, definition: Sequence[str], endorsers: Sequence[PeerOrg], timeout: float,
    nodes: Sequence[NodeProcess] = (), *, what: str, committed: Callable[[], bool],
) -> None:
    """`commit` as `anchor`'s admin, endorsed by `endorsers`' peers; a commit an earlier attempt got through
    (`committed()` answers true) counts as done."""
    peers: list[str] = []
    for org in endorsers:
        peers += ["--peerAddresses", org.endpoint, "--tlsRootCertFiles", str(layout.peer_tls_ca(org))]
    command = [str(layout.binary("peer")), "lifecycle", "chaincode", "commit", *orderer_tls_args(layout),
               *definition, *peers]
    retry_transient(
        what,
        lambda: run(command, peer_admin_env(layout, anchor), timeout=60),
        timeout,
        list(nodes),
        done_if=lambda _exc: committed(),
    )


def _committed_quietly(layout: Layout, org: PeerOrg) -> bool:
    try:
        return committed_sequence(layout, org) == CHAINCODE_SEQUENCE
    except NetworkError:
        return False


def chaincode_server_env(package_id: str, address: str, tls: ChaincodeTLS | None) -> dict[str, str]:
    """Everything the chaincode server needs in its environment to be the server the peers dial."""
    env = {"CHAINCODE_ID": package_id, "CHAINCODE_SERVER_ADDRESS": address}
    if tls is not None:
        env.update(tls.server_env())
    return env


def start_chaincode_server(
    layout: Layout, server_env: dict[str, str], command: Sequence[str] | None
) -> NodeProcess:
    env = dict(os.environ)
    env.update(server_env)
    return start(
        "chaincode",
        list(command or DEFAULT_CHAINCODE_COMMAND),
        env,
        layout.pids_dir,
        layout.logs_dir,
        cwd=NETWORK_DIR.parent,
    )
