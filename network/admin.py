"""The Fabric command-line tools as LedgerHub's network uses them: node and admin environments, osnadmin,
`peer channel getinfo`, `peer lifecycle chaincode querycommitted`, and the network.json document.

Split from manage.py so the orchestration there reads as the sequence of steps it is; tests use these
helpers directly to look at a running network the way an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from network import hsm
from network.layout import (
    CHAINCODE_LABEL,
    CHAINCODE_NAME,
    CHAINCODE_SEQUENCE,
    CHAINCODE_VERSION,
    CHANNEL,
    ENDORSEMENT_POLICY,
    FABRIC_VERSION,
    Layout,
    PeerOrg,
    default_bin_dir,
)
from network.procs import NetworkError, run
from network.settings import network_settings

TOOLS = ("peer", "orderer", "configtxgen", "cryptogen", "osnadmin")


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


# ---- environments ----


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["FABRIC_LOGGING_SPEC"] = network_settings().fabric_log_spec
    return env


def peer_node_env(layout: Layout, org: PeerOrg) -> dict[str, str]:
    env = base_env()
    env["FABRIC_CFG_PATH"] = str(layout.peer_dir(org))
    env["CORE_VM_ENDPOINT"] = ""  # also empty in core.yaml: there is no Docker engine
    env.update(hsm.node_env(layout.run_dir, f"peer-{org.key}"))  # --hsm: token conf + PKCS11 core.yaml
    return env


def peer_admin_env(layout: Layout, org: PeerOrg) -> dict[str, str]:
    """The `peer` CLI acting as the org's Admin against the org's own peer, over TLS."""
    env = peer_node_env(layout, org)
    env.update(
        FABRIC_CFG_PATH=str(layout.peer_dir(org)),  # the SW core.yaml: the Admin's key is a file (ADR 0036)
        CORE_PEER_LOCALMSPID=org.mspid,
        CORE_PEER_MSPCONFIGPATH=str(layout.user_msp_dir(org, "Admin")),
        CORE_PEER_ADDRESS=org.endpoint,
        CORE_PEER_TLS_ENABLED="true",
        CORE_PEER_TLS_ROOTCERT_FILE=str(layout.peer_tls_ca(org)),
    )
    return env


def orderer_env(layout: Layout) -> dict[str, str]:
    env = base_env()
    env["FABRIC_CFG_PATH"] = str(layout.orderer_dir)
    env["ORDERER_GENERAL_BOOTSTRAPMETHOD"] = "none"
    env.update(hsm.node_env(layout.run_dir, "orderer"))
    return env


def orderer_tls_args(layout: Layout) -> list[str]:
    return ["-o", f"127.0.0.1:{layout.orderer_port}", "--tls", "--cafile", str(layout.orderer_tls_ca)]


def osnadmin(layout: Layout, *args: str) -> tuple[int, Any]:
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
        base_env(),
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


def channel_height(layout: Layout, env: dict[str, str], channel: str = CHANNEL) -> int:
    """Block height of `channel` (default `billing`) on the peer `env` points at (`peer channel getinfo`)."""
    out = run([str(layout.binary("peer")), "channel", "getinfo", "-c", channel], env, timeout=30)
    start_at = out.index("{")
    return int(json.loads(out[start_at : out.rindex("}") + 1])["height"])


def committed_sequence(layout: Layout, org: PeerOrg, channel: str = CHANNEL) -> int | None:
    """The committed definition's sequence of the chaincode on `channel` (default `billing`) as `org`'s
    peer sees it (querycommitted), or None."""
    out = run(
        [
            str(layout.binary("peer")),
            "lifecycle",
            "chaincode",
            "querycommitted",
            "--channelID",
            channel,
            "--name",
            CHAINCODE_NAME,
            "-O",
            "json",
        ],
        peer_admin_env(layout, org),
        timeout=30,
    )
    return int(json.loads(out[out.index("{") : out.rindex("}") + 1])["sequence"])


def describe(
    layout: Layout,
    package_id: str,
    server_env: dict[str, str],
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
        "channel": CHANNEL,  # the default channel (every founding org's); all of them under `channels`
        "channels": {
            CHANNEL: {
                "orgs": [o.mspid for o in layout.orgs],
                "block": str(layout.channel_block),
                "profile": "BillingChannel",
                "endorsement_policy": ENDORSEMENT_POLICY,
            }
        },
        "chaincode": {
            "name": CHAINCODE_NAME,
            "label": CHAINCODE_LABEL,
            "version": CHAINCODE_VERSION,
            "sequence": CHAINCODE_SEQUENCE,
            "package_id": package_id,
            "server_address": server_env["CHAINCODE_SERVER_ADDRESS"],
            "server_tls": "CHAINCODE_TLS_CERT_FILE" in server_env,
            # the exact environment `python -m chaincode` needs (add it to os.environ and start the server)
            "server_env": server_env,
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
