"""Rotate an HSM node's own signing key (`ledgerhub network rotate-node-key <node>`, ADR 0036).

A new P-256 key pair is generated on the node's token, the org CA issues a certificate for a CSR signed on
the token (same subject and NodeOU), the node is stopped, its signcert replaced and it is started again on
the new key. Nothing in the channel configuration changes: the org's MSP definition trusts the org CA, not
individual node certificates, so every other node accepts the new certificate at once. The old key stays
on the token and its certificate stays valid until it expires or the org revokes it: the old certificate
is kept as `hsm/<node>/previous/<old ski>.pem`, and `ledgerhub network retire-node-key <node>`
(network/hsm_retire.py, ADR 0056) puts a CRL for it into the org's MSP through a channel config update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from network import hsm
from network.admin import orderer_env, peer_node_env
from network.manage import make_layout
from network.procs import NetworkError, healthz, recorded, start, stop, wait_until


def rotate(run_dir: Path, node: str, *, timeout: float = 180.0) -> dict[str, Any]:
    """Rotate `node`'s ("orderer" or "peer-<org>") signing key; returns {node, ski, previous_ski}."""
    network_json = run_dir / "network.json"
    port_base = json.loads(network_json.read_text())["port_base"] if network_json.is_file() else None
    layout = make_layout(run_dir, port_base)  # the network's own ports (its operations endpoints)
    if not hsm.enabled(layout.run_dir):
        raise NetworkError(f"{layout.run_dir} is not a network brought up with --hsm")
    doc = hsm.state(layout.run_dir)
    if node not in doc["nodes"]:
        raise NetworkError(f"unknown node {node!r}; HSM nodes: {', '.join(sorted(doc['nodes']))}")
    entry = doc["nodes"][node]
    spec = next(n for n in hsm.nodes(layout) if n.name == node)
    version = len(entry.get("previous_skis", [])) + 2
    cert_file = Path(entry["signcert"])
    request = {
        "module": doc["module"],
        "label": entry["token_label"],
        "key_label": f"{entry['token_label']}-v{version}",
        "pin": (hsm.hsm_dir(layout) / node / "pin").read_text().strip(),
        "ca_cert": str(next(iter(sorted(spec.ca_dir.glob("*-cert.pem"))))),
        "ca_key": str(spec.ca_dir / "priv_sk"),
        "template_cert": str(cert_file),
        "node_ou": spec.node_ou,
    }
    answer = hsm.enroll_answer(node, hsm.spawn_enroll(Path(entry["softhsm2_conf"]), request))
    running = {n.name: n for n in recorded(layout.pids_dir)}
    if node in running and running[node].is_alive() and not stop(running[node]):
        raise NetworkError(f"{node} did not stop; its certificate was not replaced")
    kept = hsm.hsm_dir(layout) / node / "previous"
    kept.mkdir(mode=0o700, exist_ok=True)
    (kept / f"{entry['ski']}.pem").write_text(cert_file.read_text())  # for its CRL (hsm_retire)
    tmp = cert_file.with_suffix(".tmp")
    tmp.write_text(answer["certificate"])
    tmp.replace(cert_file)
    previous = entry["ski"]
    entry["previous_skis"] = [*entry.get("previous_skis", []), previous]
    entry["ski"] = answer["ski"]
    state_file = hsm.hsm_dir(layout) / hsm.STATE
    state_tmp = state_file.with_suffix(".tmp")
    state_tmp.write_text(json.dumps(doc, indent=2))
    state_tmp.replace(state_file)
    if node == "orderer":
        proc = start(
            node,
            [str(layout.binary("orderer"))],
            orderer_env(layout),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.orderer_dir,
        )
        port = layout.orderer_operations_port
    else:
        org = layout.org(node.removeprefix("peer-"))
        proc = start(
            node,
            [str(layout.binary("peer")), "node", "start"],
            peer_node_env(layout, org),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.peer_dir(org),
        )
        port = org.operations_port
    wait_until(f"{node} /healthz after key rotation", lambda: healthz(port), timeout, [proc])
    return {"node": node, "ski": answer["ski"], "previous_ski": previous}
