"""HSM-held node keys for the dev network (`ledgerhub network up --hsm`, ADR 0036).

The orderer's and each peer's own signing key (the one their local MSP signs endorsements, blocks and
gossip messages with) is generated on a SoftHSM2 token of that node and never exists as a file:

1. cryptogen makes the MSP tree as usual (CA keys, TLS keys, users, and a node key file);
2. per node, a token in `<run dir>/hsm/<node>/tokens` (its own SOFTHSM2_CONF: one token directory per node,
   like one HSM partition per node, never a shared or global one) is initialised and a P-256 key pair is
   generated on it, sensitive and never extractable, CKA_ID = SKI (SHA-256 of the uncompressed point,
   which is how Fabric's PKCS#11 BCCSP finds the key of the MSP's signing certificate);
3. a CSR signed on the token goes to the org CA (cryptogen's CA key file: ADR 0036 says why that is
   acceptable for the dev network) and the certificate it issues replaces the node's signcert; the node's
   keystore key file is deleted;
4. the node's config gets `BCCSP.Default: PKCS11` (Library, Label, Pin, Hash SHA2, Security 256), and its
   process gets SOFTHSM2_CONF in its environment (`node_env`). The nodes run the `pkcs11`-tagged binaries
   (`network/install.sh --pkcs11`).

Steps 2-3 run in a child process per node (`python -m network.hsm`, request as JSON on stdin, the PIN never
on a command line): SoftHSM reads SOFTHSM2_CONF once per process, and the calling process may hold the
library already for the hub's own token.

TLS keys stay files: Fabric's gRPC TLS (server and client certificates) loads its key with Go's crypto/tls
from the PEM file and does not go through the BCCSP.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from network.layout import FABRIC_VERSION, NETWORK_DIR, Layout
from network.procs import NetworkError
from network.settings import network_settings

STATE = "state.json"
PEM_PRIVATE = re.compile(rb"-----BEGIN ((?:EC |RSA |ENCRYPTED )?PRIVATE KEY)-----")


def pkcs11_bin_dir() -> Path:
    """Where `network/install.sh --pkcs11` puts the pkcs11-tagged peer/orderer (plus links to the tools)."""
    configured = network_settings().fabric_pkcs11_bin
    if configured:
        return configured
    return Path.home() / ".cache" / "ledgerhub" / f"fabric-{FABRIC_VERSION}-pkcs11" / "bin"


def default_hsm() -> bool:
    """`LEDGERHUB_FABRIC_HSM=1` makes `up()` (and the test fixture) bring the network up with --hsm."""
    return network_settings().fabric_hsm


def module_path() -> str:
    return network_settings().fabric_pkcs11_module


def unavailable_reason(bin_dir: Path | None = None) -> str | None:
    """None when an HSM network can start here; else why not."""
    d = bin_dir or pkcs11_bin_dir()
    if not Path(module_path()).is_file():
        return f"PKCS#11 module {module_path()} missing (apt-get install softhsm2)"
    missing = [t for t in ("peer", "orderer") if not os.access(d / t, os.X_OK)]
    if missing:
        reason = f"pkcs11-tagged Fabric binaries missing in {d}: {', '.join(missing)}"
        err = d.parent / "install-error.log"
        if err.is_file():
            return f"{reason}; network/install.sh --pkcs11 failed: {err.read_text().strip()[:600]}"
        return f"{reason}; run network/install.sh --pkcs11"
    return None


@dataclass(frozen=True)
class Node:
    """One node whose signing key goes on a token."""

    name: str  # "orderer" | "peer-<org key>", as in pids/ and logs/
    msp_dir: Path
    ca_dir: Path  # cryptogen's org CA: ca/*-cert.pem + ca/priv_sk
    node_ou: str  # "peer" | "orderer"


def nodes(layout: Layout) -> list[Node]:
    out = [Node("orderer", layout.orderer_msp_dir, layout.orderer_org_dir / "ca", "orderer")]
    for org in layout.orgs:
        out.append(Node(f"peer-{org.key}", layout.peer_msp_dir(org), layout.org_dir(org) / "ca", "peer"))
    return out


def hsm_dir(layout: Layout) -> Path:
    return layout.run_dir / "hsm"


def enabled(run_dir: Path) -> bool:
    """True when the network in `run_dir` was brought up with --hsm."""
    return (run_dir / "hsm" / STATE).is_file()


def state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "hsm" / STATE).read_text())


def token_label(node: str) -> str:
    return f"ledgerhub-{node}"[:32]


# ---- provisioning (at `up`, after cryptogen, before the nodes start) ----


def provision(layout: Layout, only: Collection[str] | None = None) -> dict[str, Any]:
    """Token, key pair, certificate and config for every node (or the nodes named in `only`, added to the
    existing state: a peer of an org that joins later, ADR 0054); writes `<run dir>/hsm/state.json`."""
    from hub.keys.pkcs11 import write_softhsm_conf

    base = hsm_dir(layout)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    children: list[tuple[Node, Path, subprocess.Popen[str]]] = []
    for node in nodes(layout):
        if only is not None and node.name not in only:
            continue
        conf = write_softhsm_conf(base / node.name)  # <node>/softhsm2.conf + <node>/tokens (0700)
        pin_file = base / node.name / "pin"
        pin = secrets.token_hex(16)
        pin_file.touch(mode=0o600)
        pin_file.write_text(pin)
        cert = _signcert(node.msp_dir)
        request = {
            "module": module_path(),
            "label": token_label(node.name),
            "pin": pin,
            "so_pin": secrets.token_hex(16),  # not kept: nobody administers a dev network's token
            "ca_cert": str(_one(node.ca_dir, "*-cert.pem")),
            "ca_key": str(node.ca_dir / "priv_sk"),
            "template_cert": str(cert),
            "node_ou": node.node_ou,
        }
        children.append((node, conf, spawn_enroll(conf, request)))
    doc: dict[str, Any] = {"module": module_path(), "nodes": {}}
    if only is not None:
        doc = state(layout.run_dir)
    for node, conf, child in children:
        answer = enroll_answer(node.name, child)
        cert = _signcert(node.msp_dir)
        cert.write_text(answer["certificate"])
        for key_file in (node.msp_dir / "keystore").iterdir():
            key_file.unlink()  # the node's software key: replaced by the token key
        doc["nodes"][node.name] = {
            "token_label": token_label(node.name),
            "softhsm2_conf": str(conf),
            "ski": answer["ski"],
            "signcert": str(cert),
        }
    write_configs(layout, only)
    tmp = base / (STATE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(base / STATE)
    return doc


def spawn_enroll(conf: Path, request: dict[str, Any]) -> subprocess.Popen[str]:
    """`python -m network.hsm` with the node's SOFTHSM2_CONF; the request (PINs) goes over stdin."""
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    env.pop("LEDGERHUB_PKCS11_PIN", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "network.hsm"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=NETWORK_DIR.parent,
    )
    assert child.stdin is not None
    child.stdin.write(json.dumps(request))
    child.stdin.close()
    return child


def enroll_answer(name: str, child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    out = child.stdout.read()  # stdin is closed already: read to the end, then reap
    child.wait(timeout=120)
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = {"ok": False, "error": f"exit {child.returncode}: {out.strip()[-400:]}"}
    if child.returncode != 0 or not answer.get("ok"):
        raise NetworkError(f"HSM key for {name}: {answer.get('error', 'failed')}")
    return answer


def _one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise NetworkError(f"expected one {pattern} in {directory}, found {len(found)}")
    return found[0]


def _signcert(msp_dir: Path) -> Path:
    return _one(msp_dir / "signcerts", "*.pem")


def bccsp_block(indent: str, library: str, label: str, pin: str) -> str:
    """The BCCSP section of core.yaml / orderer.yaml for the PKCS#11 provider (fabric-lib-go's
    PKCS11Opts: Library, Label, Pin, Hash, Security; keys are found by CKA_ID = SKI)."""
    i = indent
    return (
        f"{i}BCCSP:\n{i}  Default: PKCS11\n{i}  PKCS11:\n{i}    Library: {library}\n"
        f'{i}    Label: {label}\n{i}    Pin: "{pin}"\n{i}    Hash: SHA2\n{i}    Security: 256\n'
        f"{i}  SW:\n{i}    Hash: SHA2\n{i}    Security: 256\n"
    )


def replace_bccsp(config: str, block_for_indent: Any) -> str:
    """Replace the one `BCCSP:` mapping of a rendered Fabric config with `block_for_indent(indent)`."""
    lines = config.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*BCCSP:\s*", line.rstrip("\n"))]
    if len(starts) != 1:
        raise NetworkError(f"expected one BCCSP section in the config, found {len(starts)}")
    start = starts[0]
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > len(indent)
    ):
        end += 1
    return "".join(lines[:start]) + block_for_indent(indent) + "".join(lines[end:])


def node_config_dir(layout: Layout, node: str) -> Path:
    """FABRIC_CFG_PATH of an HSM node. The orderer's own dir (nothing else reads orderer.yaml); a peer's
    `node/` subdir, so the admin CLI (FABRIC_CFG_PATH = the peer dir, Admin key in a file) keeps SW."""
    if node == "orderer":
        return layout.orderer_dir
    return layout.peer_dir(layout.org(node.removeprefix("peer-"))) / "node"


def write_configs(layout: Layout, only: Collection[str] | None = None) -> None:
    base = hsm_dir(layout)
    for node in nodes(layout):
        if only is not None and node.name not in only:
            continue
        pin = (base / node.name / "pin").read_text().strip()

        def block(indent: str, n: Node = node, p: str = pin) -> str:
            return bccsp_block(indent, module_path(), token_label(n.name), p)

        if node.name == "orderer":
            src = layout.orderer_dir / "orderer.yaml"
            dst = src
        else:
            src = layout.peer_dir(layout.org(node.name.removeprefix("peer-"))) / "core.yaml"
            dst = node_config_dir(layout, node.name) / "core.yaml"
            dst.parent.mkdir(mode=0o700, exist_ok=True)
        text = replace_bccsp(src.read_text(), block)
        tmp = dst.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(text)
        tmp.replace(dst)


def node_env(run_dir: Path, node: str) -> dict[str, str]:
    """What an HSM node's process needs on top of its plain environment ({} without --hsm)."""
    if not enabled(run_dir):
        return {}
    entry = state(run_dir)["nodes"].get(node)
    if entry is None:
        return {}
    layout = Layout(run_dir=run_dir)
    # Fabric prints its whole configuration at start-up at INFO, the PKCS#11 PIN included (the orderer's
    # "Orderer config values", the peer's "Peer config with combined core.yaml settings"): those two
    # loggers run at WARNING, so the PIN stays out of the logs (bccsp_p11 at DEBUG prints it too).
    quiet = "orderer.common.server" if node == "orderer" else "nodeCmd"
    spec = network_settings().fabric_log_spec
    return {
        "SOFTHSM2_CONF": entry["softhsm2_conf"],
        "FABRIC_CFG_PATH": str(node_config_dir(layout, node)),
        "FABRIC_LOGGING_SPEC": f"{spec}:{quiet}=warning",
    }


def describe(run_dir: Path) -> dict[str, Any] | None:
    """The `hsm` section of network.json (no PIN)."""
    if not enabled(run_dir):
        return None
    doc = state(run_dir)
    return {
        "module": doc["module"],
        "nodes": {
            name: {"token_label": e["token_label"], "ski": e["ski"], "softhsm2_conf": e["softhsm2_conf"]}
            for name, e in doc["nodes"].items()
        },
        "file_keys": "TLS keys, org CA keys, cryptogen Admin/User1 keys (ADR 0036)",
    }


def pem_private_keys(root: Path) -> Iterator[Path]:
    """Every file under `root` holding a PEM private key (token directories are not PEM)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1_000_000:
            try:
                if PEM_PRIVATE.search(path.read_bytes()):
                    yield path
            except OSError:
                continue


# ---- the child: token, key pair on it, CSR, certificate from the org CA ----


def _enroll(request: dict[str, Any]) -> dict[str, Any]:
    from cryptography import x509

    from hub.keys.certs import cert_pem, enroll_with_ca
    from hub.keys.p11init import init_token
    from hub.keys.pkcs11 import TokenSession

    if request.get("so_pin"):  # a new token; a rotation (no SO PIN) adds a key to the existing one
        init_token(request["module"], request["label"], request["so_pin"], request["pin"])
    token = TokenSession(request["module"], request["label"], request["pin"])
    signer = token.generate_ec_key(request.get("key_label") or request["label"])
    template = x509.load_pem_x509_certificate(Path(request["template_cert"]).read_bytes())
    cert = enroll_with_ca(
        Path(request["ca_cert"]).read_bytes(),
        request["ca_key"],
        signer,
        template.subject,
        request["node_ou"],
        days=3650,
    )
    return {"ok": True, "ski": signer.key_id, "certificate": cert_pem(cert)}


def main() -> int:
    try:
        answer = _enroll(json.loads(sys.stdin.read()))
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}))
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "default_hsm",
    "describe",
    "enabled",
    "node_env",
    "pem_private_keys",
    "pkcs11_bin_dir",
    "provision",
    "unavailable_reason",
]
