"""Bring the LedgerHub dev Fabric network up and down: one Raft orderer, three peers, channel `billing`,
and the `billing` chaincode deployed as a service (CCaaS) through the full lifecycle.

`up()` waits on real signals only (operations /healthz, the orderer's channel participation status, peer
channel heights, the lifecycle's committed definition, gossip membership) and never sleeps a fixed time.
It writes `<run dir>/network.json` for the hub (documented in network/README.md). The chaincode server
itself belongs to the caller: `up()` returns its package id so the caller can start
`CHAINCODE_ID=<id> CHAINCODE_SERVER_ADDRESS=<addr> python -m chaincode`, or pass `start_chaincode=True`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from network import hsm
from network.admin import (
    FabricUnavailable,
    base_env,
    channel_height,
    describe,
    missing_binaries,
    orderer_env,
    osnadmin,
    peer_admin_env,
    peer_node_env,
    unavailable_reason,
)
from network.cctls import make_chaincode_tls
from network.deploy import (  # chaincode_server_env, retry_transient: re-exported for callers
    DEFAULT_CHAINCODE_COMMAND,
    chaincode_server_env,
    deploy_chaincode,
    retry_transient,
    start_chaincode_server,
)
from network.layout import (
    CHANNEL,
    FABRIC_VERSION,
    NETWORK_DIR,
    Layout,
    default_bin_dir,
    default_port_base,
    default_run_dir,
    render_all,
)
from network.procs import (
    NetworkError,
    NodeProcess,
    alive,
    group_rss_kb,
    healthz,
    metric,
    port_open,
    recorded,
    run,
    start,
    stop,
    wait_until,
)

__all__ = [
    "DEFAULT_CHAINCODE_COMMAND",
    "FabricUnavailable",
    "NetworkError",
    "chaincode_server_env",
    "describe",
    "down",
    "missing_binaries",
    "retry_transient",
    "status",
    "up",
]

_retry_transient = retry_transient  # the name callers of earlier versions import

MARKER = ".ledgerhub-fabric-run"


def make_layout(
    run_dir: Path | None = None, port_base: int | None = None, bin_dir: Path | None = None
) -> Layout:
    run_dir = (run_dir or default_run_dir()).resolve()
    if bin_dir is None:  # a network brought up with --hsm runs (and restarts) the pkcs11-tagged nodes
        bin_dir = hsm.pkcs11_bin_dir() if hsm.enabled(run_dir) else default_bin_dir()
    return Layout(
        run_dir=run_dir,
        port_base=port_base if port_base is not None else default_port_base(),
        bin_dir=bin_dir,
    )


# ---- up ----


def up(
    chaincode_address: str | None = None,
    *,
    run_dir: Path | None = None,
    port_base: int | None = None,
    bin_dir: Path | None = None,
    start_chaincode: bool = False,
    chaincode_command: Sequence[str] | None = None,
    chaincode_tls: bool = True,
    timeout: float = 180.0,
    hsm_keys: bool | None = None,
) -> dict[str, Any]:
    """Start the network and deploy the chaincode; return the network description (also network.json).

    `hsm_keys` (default: $LEDGERHUB_FABRIC_HSM): the nodes' signing keys on SoftHSM2 tokens (network/hsm.py).
    Idempotent: if this run dir's network is already up and healthy, its network.json is returned as is.
    On any failure everything started so far is stopped again, so a failed `up` leaves no process.
    """
    hsm_keys = hsm.default_hsm() if hsm_keys is None else hsm_keys
    if bin_dir is None:
        bin_dir = hsm.pkcs11_bin_dir() if hsm_keys else default_bin_dir()
    layout = make_layout(run_dir, port_base, bin_dir)
    reason = unavailable_reason(layout.bin_dir)
    if hsm_keys and not reason:
        reason = hsm.unavailable_reason(layout.bin_dir)
    if reason:
        raise FabricUnavailable(reason)
    existing = _running_network(layout)
    if existing is not None:
        return existing
    if layout.run_dir.exists():  # leftovers of an earlier or crashed run in this dir: stop them first
        _stop_all(layout)
        _remove_run_dir(layout)
    busy = [p for p in layout.all_ports() if port_open(p)]
    if busy:
        raise NetworkError(
            f"ports {busy} on 127.0.0.1 are in use: another network (or program) holds this port base; "
            f"set LEDGERHUB_FABRIC_PORT_BASE to another base (now {layout.port_base})"
        )
    address = chaincode_address or f"127.0.0.1:{layout.default_chaincode_port}"
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    _fresh_run_dir(layout)
    try:
        _generate(layout)
        if hsm_keys:
            hsm.provision(layout)
        timings["artifacts"] = time.monotonic() - t0
        nodes = _start_nodes(layout)
        _wait_healthy(layout, nodes, timeout)
        timings["nodes_healthy"] = time.monotonic() - t0
        _create_channel(layout, nodes, timeout)
        timings["channel_joined"] = time.monotonic() - t0
        tls = make_chaincode_tls(layout.crypto_dir / "chaincode") if chaincode_tls else None
        package_id = deploy_chaincode(layout, address, tls, nodes, timeout)
        timings["chaincode_committed"] = time.monotonic() - t0
        server_env = chaincode_server_env(package_id, address, tls)
        if start_chaincode:
            cc = start_chaincode_server(layout, server_env, chaincode_command)
            nodes.append(cc)
            host, _, port = address.rpartition(":")
            wait_until(f"chaincode server on {address}", lambda: port_open(int(port), host), timeout, [cc])
            timings["chaincode_server_listening"] = time.monotonic() - t0
        discovery_ready = _wait_gossip(layout, nodes, min(timeout, 90.0))
        timings["discovery_wait_end"] = time.monotonic() - t0
        info = describe(layout, package_id, server_env, started_chaincode=start_chaincode, timings=timings)
        info["discovery_ready"] = discovery_ready
        info["hsm"] = hsm.describe(layout.run_dir)
        tmp = layout.network_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(layout.network_json)
        return info
    except BaseException:
        _stop_all(layout)
        raise


def _running_network(layout: Layout) -> dict[str, Any] | None:
    if not layout.network_json.is_file():
        return None
    nodes = recorded(layout.pids_dir)
    if nodes and all(n.is_alive() for n in nodes):
        try:
            return json.loads(layout.network_json.read_text())
        except ValueError:
            return None
    return None


def _fresh_run_dir(layout: Layout) -> None:
    layout.run_dir.mkdir(parents=True)
    (layout.run_dir / MARKER).write_text(f"fabric {FABRIC_VERSION}, port base {layout.port_base}\n")


def _generate(layout: Layout) -> None:
    render_all(layout)
    env = base_env()
    run(
        [
            str(layout.binary("cryptogen")),
            "generate",
            "--config",
            str(NETWORK_DIR / "crypto-config.yaml"),
            "--output",
            str(layout.crypto_dir),
        ],
        env,
    )
    env["FABRIC_CFG_PATH"] = str(layout.config_dir)
    run(
        [
            str(layout.binary("configtxgen")),
            "-configPath",
            str(layout.config_dir),
            "-profile",
            "BillingChannel",
            "-outputBlock",
            str(layout.channel_block),
            "-channelID",
            CHANNEL,
        ],
        env,
    )


def _start_nodes(layout: Layout) -> list[NodeProcess]:
    nodes = [
        start(
            "orderer",
            [str(layout.binary("orderer"))],
            orderer_env(layout),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.orderer_dir,
        )
    ]
    for org in layout.orgs:
        nodes.append(
            start(
                f"peer-{org.key}",
                [str(layout.binary("peer")), "node", "start"],
                peer_node_env(layout, org),
                layout.pids_dir,
                layout.logs_dir,
                cwd=layout.peer_dir(org),
            )
        )
    return nodes


def _wait_healthy(layout: Layout, nodes: list[NodeProcess], timeout: float) -> None:
    wait_until("orderer /healthz", lambda: healthz(layout.orderer_operations_port), timeout, nodes)
    for org in layout.orgs:
        wait_until(f"peer {org.key} /healthz", lambda o=org: healthz(o.operations_port), timeout, nodes)


def _create_channel(layout: Layout, nodes: list[NodeProcess], timeout: float) -> None:
    status, body = osnadmin(
        layout, "join", "--channelID", CHANNEL, "--config-block", str(layout.channel_block)
    )
    if status != 201:
        raise NetworkError(f"osnadmin channel join answered {status}: {body}")

    def orderer_active() -> bool:
        st, info = osnadmin(layout, "list", "--channelID", CHANNEL)
        return st == 200 and isinstance(info, dict) and info.get("status") == "active"

    wait_until(f"orderer channel {CHANNEL} active", orderer_active, timeout, nodes)
    # "active" comes before Raft has elected a leader; a broadcast before that is refused
    # (SERVICE_UNAVAILABLE), so wait for the single orderer to lead its channel.
    wait_until(
        f"orderer Raft leader for {CHANNEL}",
        lambda: (
            metric(layout.orderer_operations_port, "consensus_etcdraft_is_leader", {"channel": CHANNEL}) == 1
        ),
        timeout,
        nodes,
    )
    for org in layout.orgs:
        env = peer_admin_env(layout, org)
        run([str(layout.binary("peer")), "channel", "join", "-b", str(layout.channel_block)], env)
        wait_until(
            f"peer {org.key} has channel {CHANNEL}",
            lambda e=env: channel_height(layout, e) >= 1,
            timeout,
            nodes,
        )


def _wait_gossip(layout: Layout, nodes: list[NodeProcess], timeout: float) -> bool:
    """Gateway discovery finds the other orgs' peers only once gossip knows them: wait for each peer's
    gossip membership metric to count the two other peers on the channel. Not fatal when it does not
    come (the network works; a client's first submit may then need a retry): the answer goes into
    network.json as `discovery_ready`."""
    others = len(layout.orgs) - 1
    try:
        for org in layout.orgs:
            wait_until(
                f"peer {org.key} gossip membership of {CHANNEL}",
                lambda o=org: (
                    (
                        metric(o.operations_port, "gossip_membership_total_peers_known", {"channel": CHANNEL})
                        or 0
                    )
                    >= others
                ),
                timeout,
                nodes,
            )
    except NetworkError as exc:
        if any(not n.is_alive() for n in nodes):
            raise
        print(f"warning: {exc}", file=sys.stderr)
        return False
    return True


# ---- down / status ----


def _stop_all(layout: Layout) -> list[str]:
    """Stop every recorded node (chaincode first, orderer last); return the names still alive (none)."""
    order = {"chaincode": 0, "orderer": 2}
    nodes = sorted(recorded(layout.pids_dir), key=lambda n: order.get(n.name, 1))
    return [n.name for n in nodes if not stop(n)]


def _remove_run_dir(layout: Layout) -> None:
    if not (layout.run_dir / MARKER).exists() and any(layout.run_dir.iterdir()):
        raise NetworkError(
            f"{layout.run_dir} is not a LedgerHub network run dir (no {MARKER}); not removing it"
        )
    shutil.rmtree(layout.run_dir)


def down(run_dir: Path | None = None, *, keep_state: bool = False) -> list[str]:
    """Stop all nodes (SIGTERM, then SIGKILL) and remove the run dir. Returns the names of nodes stopped.
    Raises NetworkError if any process survives."""
    layout = make_layout(run_dir)
    if not layout.run_dir.exists():
        return []
    names = [n.name for n in recorded(layout.pids_dir) if n.is_alive()]
    survivors = _stop_all(layout)
    if survivors:
        raise NetworkError(f"could not stop: {', '.join(survivors)}")
    if not keep_state:
        _remove_run_dir(layout)
    return names


def status(run_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each recorded node: pid, alive, resident memory of its process group (kB), and /healthz where the
    node has an operations endpoint."""
    layout = make_layout(run_dir)
    info: dict[str, Any] = {}
    if layout.network_json.is_file():
        info = json.loads(layout.network_json.read_text())
    ops: dict[str, str] = {}
    if info:
        ops["orderer"] = info["orderer"]["operations"]
        ops.update({f"peer-{k}": v["peer"]["operations"] for k, v in info["orgs"].items()})
    report: dict[str, dict[str, Any]] = {}
    for node in recorded(layout.pids_dir):
        entry: dict[str, Any] = {
            "pid": node.pid,
            "alive": alive(node.pid, node.start_time),
            "log": str(node.log),
        }
        entry["rss_kb"] = group_rss_kb(node.pid) if entry["alive"] else 0
        if node.name in ops and entry["alive"]:
            try:
                entry["healthy"] = healthz(int(ops[node.name].rsplit(":", 1)[1]))
            except OSError:
                entry["healthy"] = False
        report[node.name] = entry
    return report
