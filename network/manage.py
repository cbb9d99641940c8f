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
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from network import ccpackage
from network.layout import (
    CHAINCODE_LABEL,
    CHAINCODE_NAME,
    CHAINCODE_SEQUENCE,
    CHAINCODE_VERSION,
    CHANNEL,
    ENDORSEMENT_POLICY,
    FABRIC_VERSION,
    NETWORK_DIR,
    Layout,
    PeerOrg,
    default_bin_dir,
    default_port_base,
    default_run_dir,
    render_all,
)
from network.procs import (
    NetworkError,
    NodeProcess,
    alive,
    healthz,
    metric,
    port_open,
    recorded,
    run,
    start,
    stop,
    wait_until,
)

TOOLS = ("peer", "orderer", "configtxgen", "cryptogen", "osnadmin")
MARKER = ".ledgerhub-fabric-run"
DEFAULT_CHAINCODE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "chaincode")


class FabricUnavailable(NetworkError):
    """The Fabric binaries are not installed (network/install.sh could not build them)."""


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    d = bin_dir or default_bin_dir()
    return [t for t in TOOLS if not os.access(d / t, os.X_OK)]


def unavailable_reason(bin_dir: Path | None = None) -> str | None:
    """None when all binaries are there; else why not, quoting install.sh's recorded failure."""
    d = bin_dir or default_bin_dir()
    missing = missing_binaries(d)
    if not missing:
        return None
    reason = f"Fabric {FABRIC_VERSION} binaries missing in {d}: {', '.join(missing)}"
    err = d.parent / "install-error.log"
    if err.is_file():
        reason += f"; network/install.sh failed: {err.read_text().strip()[:600]}"
    elif shutil.which("go") is None:
        reason += "; Go is not installed, so network/install.sh cannot build them"
    else:
        reason += "; run network/install.sh"
    return reason


def make_layout(
    run_dir: Path | None = None, port_base: int | None = None, bin_dir: Path | None = None
) -> Layout:
    return Layout(
        run_dir=(run_dir or default_run_dir()).resolve(),
        port_base=port_base if port_base is not None else default_port_base(),
        bin_dir=bin_dir or default_bin_dir(),
    )


# ---- environments ----


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["FABRIC_LOGGING_SPEC"] = os.environ.get("LEDGERHUB_FABRIC_LOG_SPEC", "info")
    return env


def peer_node_env(layout: Layout, org: PeerOrg) -> dict[str, str]:
    env = _base_env()
    env["FABRIC_CFG_PATH"] = str(layout.peer_dir(org))
    env["CORE_VM_ENDPOINT"] = ""  # also empty in core.yaml: there is no Docker engine
    return env


def peer_admin_env(layout: Layout, org: PeerOrg) -> dict[str, str]:
    """The `peer` CLI acting as the org's Admin against the org's own peer, over TLS."""
    env = peer_node_env(layout, org)
    env.update(
        CORE_PEER_LOCALMSPID=org.mspid,
        CORE_PEER_MSPCONFIGPATH=str(layout.user_msp_dir(org, "Admin")),
        CORE_PEER_ADDRESS=org.endpoint,
        CORE_PEER_TLS_ENABLED="true",
        CORE_PEER_TLS_ROOTCERT_FILE=str(layout.peer_tls_ca(org)),
    )
    return env


def orderer_env(layout: Layout) -> dict[str, str]:
    env = _base_env()
    env["FABRIC_CFG_PATH"] = str(layout.orderer_dir)
    env["ORDERER_GENERAL_BOOTSTRAPMETHOD"] = "none"
    return env


def _orderer_tls_args(layout: Layout) -> list[str]:
    return ["-o", f"127.0.0.1:{layout.orderer_port}", "--tls", "--cafile", str(layout.orderer_tls_ca)]


def _osnadmin(layout: Layout, *args: str) -> tuple[int, Any]:
    """Run osnadmin against the admin endpoint; return (HTTP status, parsed JSON body or None)."""
    tls = layout.orderer_admin_tls_dir
    out = run(
        [
            str(layout.binary("osnadmin")),
            "channel",
            *args,
            "-o",
            f"127.0.0.1:{layout.orderer_admin_port}",
            "--ca-file",
            str(layout.orderer_tls_ca),
            "--client-cert",
            str(tls / "client.crt"),
            "--client-key",
            str(tls / "client.key"),
        ],
        _base_env(),
    )
    status = 0
    body: Any = None
    for i, line in enumerate(out.splitlines()):
        if line.startswith("Status:"):
            status = int(line.split(":", 1)[1])
            rest = "\n".join(out.splitlines()[i + 1 :]).strip()
            body = json.loads(rest) if rest.startswith(("{", "[")) else None
            break
    return status, body


# ---- up ----


def up(
    chaincode_address: str | None = None,
    *,
    run_dir: Path | None = None,
    port_base: int | None = None,
    bin_dir: Path | None = None,
    start_chaincode: bool = False,
    chaincode_command: Sequence[str] | None = None,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Start the network and deploy the chaincode; return the network description (also network.json).

    Idempotent: if this run dir's network is already up and healthy, its network.json is returned as is.
    On any failure everything started so far is stopped again, so a failed `up` leaves no process.
    """
    layout = make_layout(run_dir, port_base, bin_dir)
    reason = unavailable_reason(layout.bin_dir)
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
        timings["artifacts"] = time.monotonic() - t0
        nodes = _start_nodes(layout)
        _wait_healthy(layout, nodes, timeout)
        timings["nodes_healthy"] = time.monotonic() - t0
        _create_channel(layout, nodes, timeout)
        timings["channel_joined"] = time.monotonic() - t0
        package_id = _deploy_chaincode(layout, address, nodes, timeout)
        timings["chaincode_committed"] = time.monotonic() - t0
        if start_chaincode:
            cc = _start_chaincode_server(layout, package_id, address, chaincode_command)
            nodes.append(cc)
            host, _, port = address.rpartition(":")
            wait_until(f"chaincode server on {address}", lambda: port_open(int(port), host), timeout, [cc])
            timings["chaincode_server_listening"] = time.monotonic() - t0
        discovery_ready = _wait_gossip(layout, nodes, min(timeout, 90.0))
        timings["discovery_wait_end"] = time.monotonic() - t0
        info = describe(layout, package_id, address, started_chaincode=start_chaincode, timings=timings)
        info["discovery_ready"] = discovery_ready
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
    env = _base_env()
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
    status, body = _osnadmin(
        layout, "join", "--channelID", CHANNEL, "--config-block", str(layout.channel_block)
    )
    if status != 201:
        raise NetworkError(f"osnadmin channel join answered {status}: {body}")

    def orderer_active() -> bool:
        st, info = _osnadmin(layout, "list", "--channelID", CHANNEL)
        return st == 200 and isinstance(info, dict) and info.get("status") == "active"

    wait_until(f"orderer channel {CHANNEL} active", orderer_active, timeout, nodes)
    for org in layout.orgs:
        env = peer_admin_env(layout, org)
        run([str(layout.binary("peer")), "channel", "join", "-b", str(layout.channel_block)], env)
        wait_until(
            f"peer {org.key} has channel {CHANNEL}",
            lambda e=env: channel_height(layout, e) >= 1,
            timeout,
            nodes,
        )


def channel_height(layout: Layout, env: dict[str, str]) -> int:
    """Block height of `billing` on the peer `env` points at (`peer channel getinfo`)."""
    out = run([str(layout.binary("peer")), "channel", "getinfo", "-c", CHANNEL], env, timeout=30)
    start_at = out.index("{")
    return int(json.loads(out[start_at : out.rindex("}") + 1])["height"])


def _deploy_chaincode(layout: Layout, address: str, nodes: list[NodeProcess], timeout: float) -> str:
    pkg, package_id = ccpackage.write_package(layout.config_dir, CHAINCODE_LABEL, address)
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
    definition = [
        "--channelID",
        CHANNEL,
        "--name",
        CHAINCODE_NAME,
        "--version",
        CHAINCODE_VERSION,
        "--sequence",
        str(CHAINCODE_SEQUENCE),
        "--signature-policy",
        ENDORSEMENT_POLICY,
    ]
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
        run(
            [
                peer,
                "lifecycle",
                "chaincode",
                "approveformyorg",
                *_orderer_tls_args(layout),
                *definition,
                "--package-id",
                package_id,
            ],
            peer_admin_env(layout, org),
            timeout=timeout,
        )

    def ready() -> bool:
        out = run(
            [peer, "lifecycle", "chaincode", "checkcommitreadiness", *definition, "-O", "json"],
            peer_admin_env(layout, provider),
        )
        approvals = json.loads(out[out.index("{") : out.rindex("}") + 1]).get("approvals", {})
        return all(approvals.get(o.mspid) for o in layout.orgs)

    wait_until("commit readiness (all orgs approved)", ready, timeout, nodes)
    endorsers: list[str] = []
    for org in layout.orgs:
        if org.endorses:
            endorsers += ["--peerAddresses", org.endpoint, "--tlsRootCertFiles", str(layout.peer_tls_ca(org))]
    run(
        [peer, "lifecycle", "chaincode", "commit", *_orderer_tls_args(layout), *definition, *endorsers],
        peer_admin_env(layout, provider),
        timeout=timeout,
    )
    for org in layout.orgs:
        wait_until(
            f"chaincode committed on peer {org.key}",
            lambda o=org: committed_sequence(layout, o) == CHAINCODE_SEQUENCE,
            timeout,
            nodes,
        )
    return package_id


def committed_sequence(layout: Layout, org: PeerOrg) -> int | None:
    """The committed definition's sequence of `billing` as `org`'s peer sees it (querycommitted), or None."""
    out = run(
        [
            str(layout.binary("peer")),
            "lifecycle",
            "chaincode",
            "querycommitted",
            "--channelID",
            CHANNEL,
            "--name",
            CHAINCODE_NAME,
            "-O",
            "json",
        ],
        peer_admin_env(layout, org),
        timeout=30,
    )
    return int(json.loads(out[out.index("{") : out.rindex("}") + 1])["sequence"])


def _start_chaincode_server(
    layout: Layout, package_id: str, address: str, command: Sequence[str] | None
) -> NodeProcess:
    env = dict(os.environ)
    env.update(CHAINCODE_ID=package_id, CHAINCODE_SERVER_ADDRESS=address)
    return start(
        "chaincode",
        list(command or DEFAULT_CHAINCODE_COMMAND),
        env,
        layout.pids_dir,
        layout.logs_dir,
        cwd=NETWORK_DIR.parent,
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


def describe(
    layout: Layout,
    package_id: str,
    address: str,
    *,
    started_chaincode: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The network.json document (schema in network/README.md)."""

    def identity(org: PeerOrg, user: str) -> dict[str, str]:
        msp = layout.user_msp_dir(org, user)
        cert = next(iter(sorted((msp / "signcerts").glob("*.pem"))), msp / "signcerts" / "cert.pem")
        key = next(iter(sorted((msp / "keystore").glob("*"))), msp / "keystore" / "priv_sk")
        return {"name": f"{user}@{org.domain}", "msp_dir": str(msp), "cert": str(cert), "key": str(key)}

    orgs = {}
    for org in layout.orgs:
        orgs[org.key] = {
            "mspid": org.mspid,
            "endorses": org.endorses,
            "peer": {
                "name": org.peer_host,
                "endpoint": org.endpoint,
                "host_name": org.peer_host,
                "tls_root_cert": str(layout.peer_tls_ca(org)),
                "operations": f"http://127.0.0.1:{org.operations_port}",
            },
            "client": identity(org, "User1"),
            "admin": identity(org, "Admin"),
        }
    return {
        "version": 1,
        "fabric_version": FABRIC_VERSION,
        "run_dir": str(layout.run_dir),
        "port_base": layout.port_base,
        "channel": CHANNEL,
        "chaincode": {
            "name": CHAINCODE_NAME,
            "label": CHAINCODE_LABEL,
            "version": CHAINCODE_VERSION,
            "sequence": CHAINCODE_SEQUENCE,
            "package_id": package_id,
            "server_address": address,
            "server_started_by_network": started_chaincode,
            "endorsement_policy": ENDORSEMENT_POLICY,
        },
        "orderer": {
            "mspid": "OrdererMSP",
            "endpoint": f"127.0.0.1:{layout.orderer_port}",
            "admin_endpoint": f"127.0.0.1:{layout.orderer_admin_port}",
            "tls_root_cert": str(layout.orderer_tls_ca),
            "operations": f"http://127.0.0.1:{layout.orderer_operations_port}",
        },
        "orgs": orgs,
        "timings_seconds": {k: round(v, 2) for k, v in (timings or {}).items()},
    }


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
    """Each recorded node: pid, alive, and /healthz where the node has an operations endpoint."""
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
        if node.name in ops and entry["alive"]:
            try:
                entry["healthy"] = healthz(int(ops[node.name].rsplit(":", 1)[1]))
            except OSError:
                entry["healthy"] = False
        report[node.name] = entry
    return report
