"""Where everything of one dev network lives: ports, directories, certificate paths, rendered configs.

Pure computation plus template rendering, no processes: `manage.py` drives the binaries from it, and the
unit tests check it without Fabric installed. Ports come from one fixed base (default 17050, override
`LEDGERHUB_FABRIC_PORT_BASE`) so a developer can find the nodes again from another shell, and two networks in
one run are kept apart by giving them different bases.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path

from network.settings import DEFAULT_PORT_BASE, network_settings

FABRIC_VERSION = "3.1.5"
FABRIC_COMMIT = "86c1172bec37e6590c6b1ae6f847833df48d65fc"
NETWORK_DIR = Path(__file__).resolve().parent
CHANNEL = "billing"
CHAINCODE_NAME = "billing"
CHAINCODE_LABEL = "billing_1"
CHAINCODE_VERSION = "1"
CHAINCODE_SEQUENCE = 1
ENDORSEMENT_POLICY = "OR('ProviderMSP.peer','CustomerMSP.peer')"
ORDERER_DOMAIN = "orderer.ledgerhub.local"
ORDERER_HOST = f"orderer0.{ORDERER_DOMAIN}"
GATEWAY_CONCURRENCY = 500
JOINED_ORGS_FILE = "orgs.json"  # orgs added to a running network (`ledgerhub network add-org`, ADR 0054)
JOINED_PORT_OFFSET = 60  # a joined org's ports: base + 60 + 10 * slot (+0 gRPC, +1 chaincode, +2 operations)
MAX_JOINED_ORGS = 3


def default_bin_dir() -> Path:
    """Where network/install.sh puts the binaries (LEDGERHUB_FABRIC_BIN overrides, as in install.sh)."""
    configured = network_settings().fabric_bin
    if configured:
        return configured
    return Path.home() / ".cache" / "ledgerhub" / f"fabric-{FABRIC_VERSION}" / "bin"


def default_run_dir() -> Path:
    """`$LEDGERHUB_FABRIC_RUN_DIR`, else `$LEDGERHUB_DATA_DIR/fabric`, else `network/.run` (gitignored)."""
    settings = network_settings()
    if settings.fabric_run_dir:
        return settings.fabric_run_dir
    if settings.data_dir:
        return settings.data_dir / "fabric"
    return NETWORK_DIR / ".run"


def default_port_base() -> int:
    """`$LEDGERHUB_FABRIC_PORT_BASE` (1024..65435), else 17050."""
    return network_settings().fabric_port_base


@dataclass(frozen=True)
class PeerOrg:
    """One peer organisation and its single peer."""

    key: str  # "provider" | "customer" | "auditor"
    mspid: str
    domain: str
    port: int  # peer gRPC (gateway, endorser, deliver, gossip)
    chaincode_port: int  # the peer's chaincode listener (unused by CCaaS, kept off the main port)
    operations_port: int  # /healthz, /metrics
    endorses: bool

    @property
    def peer_host(self) -> str:
        return f"peer0.{self.domain}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Layout:
    """Everything about one network that follows from (run dir, port base, binaries)."""

    run_dir: Path
    port_base: int = DEFAULT_PORT_BASE
    bin_dir: Path = field(default_factory=default_bin_dir)

    # ---- ports ----
    @property
    def orderer_port(self) -> int:
        return self.port_base

    @property
    def orderer_admin_port(self) -> int:
        return self.port_base + 1

    @property
    def orderer_operations_port(self) -> int:
        return self.port_base + 2

    @property
    def default_chaincode_port(self) -> int:
        return self.port_base + 40

    @property
    def orgs(self) -> tuple[PeerOrg, ...]:
        b = self.port_base
        return (
            PeerOrg("provider", "ProviderMSP", "provider.ledgerhub.local", b + 10, b + 11, b + 12, True),
            PeerOrg("customer", "CustomerMSP", "customer.ledgerhub.local", b + 20, b + 21, b + 22, True),
            PeerOrg("auditor", "AuditorMSP", "auditor.ledgerhub.local", b + 30, b + 31, b + 32, False),
            *self.joined_orgs,
        )

    @property
    def joined_orgs(self) -> tuple[PeerOrg, ...]:
        """Orgs that joined after `up` (`<run dir>/orgs.json`, written by network/orgs.py)."""
        file = self.run_dir / JOINED_ORGS_FILE
        if not file.is_file():
            return ()
        out = []
        for entry in json.loads(file.read_text()):
            if entry.get("removed"):  # `remove-org` (ADR 0063): no longer a member; its slot stays taken
                continue
            p = self.port_base + JOINED_PORT_OFFSET + 10 * int(entry["slot"])
            out.append(PeerOrg(entry["key"], entry["mspid"], entry["domain"], p, p + 1, p + 2, True))
        return tuple(out)

    def org(self, key: str) -> PeerOrg:
        for o in self.orgs:
            if o.key == key:
                return o
        raise KeyError(key)

    def all_ports(self) -> list[int]:
        ports = [self.orderer_port, self.orderer_admin_port, self.orderer_operations_port]
        for o in self.orgs:
            ports += [o.port, o.chaincode_port, o.operations_port]
        return ports

    # ---- directories ----
    @property
    def crypto_dir(self) -> Path:
        return self.run_dir / "crypto"

    @property
    def config_dir(self) -> Path:
        return self.run_dir / "config"

    @property
    def pids_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def orderer_dir(self) -> Path:
        return self.run_dir / "orderer"

    def peer_dir(self, org: PeerOrg) -> Path:
        return self.run_dir / "peers" / org.key

    @property
    def channel_block(self) -> Path:
        return self.config_dir / f"{CHANNEL}.block"

    @property
    def network_json(self) -> Path:
        return self.run_dir / "network.json"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    # ---- crypto material (cryptogen's layout) ----
    @property
    def orderer_org_dir(self) -> Path:
        return self.crypto_dir / "ordererOrganizations" / ORDERER_DOMAIN

    @property
    def orderer_tls_dir(self) -> Path:
        return self.orderer_org_dir / "orderers" / ORDERER_HOST / "tls"

    @property
    def orderer_msp_dir(self) -> Path:
        return self.orderer_org_dir / "orderers" / ORDERER_HOST / "msp"

    @property
    def orderer_tls_ca(self) -> Path:
        return self.orderer_tls_dir / "ca.crt"

    @property
    def orderer_admin_tls_dir(self) -> Path:
        """The orderer org Admin's TLS client pair: osnadmin authenticates with it (mutual TLS)."""
        return self.orderer_org_dir / "users" / f"Admin@{ORDERER_DOMAIN}" / "tls"

    def org_dir(self, org: PeerOrg) -> Path:
        return self.crypto_dir / "peerOrganizations" / org.domain

    def peer_tls_dir(self, org: PeerOrg) -> Path:
        return self.org_dir(org) / "peers" / org.peer_host / "tls"

    def peer_msp_dir(self, org: PeerOrg) -> Path:
        return self.org_dir(org) / "peers" / org.peer_host / "msp"

    def peer_tls_ca(self, org: PeerOrg) -> Path:
        return self.peer_tls_dir(org) / "ca.crt"

    def user_msp_dir(self, org: PeerOrg, user: str) -> Path:
        """`user` is "Admin" or "User1" (cryptogen's names)."""
        return self.org_dir(org) / "users" / f"{user}@{org.domain}" / "msp"

    # ---- rendered configuration ----
    def configtx_values(self) -> dict[str, str]:
        values = {"CRYPTO": str(self.crypto_dir), "ORDERER_PORT": str(self.orderer_port)}
        for o in self.orgs:
            values[f"{o.key.upper()}_PEER_PORT"] = str(o.port)
        return values

    def orderer_values(self) -> dict[str, str]:
        return {
            "ORDERER_PORT": str(self.orderer_port),
            "ORDERER_ADMIN_PORT": str(self.orderer_admin_port),
            "ORDERER_OPERATIONS_PORT": str(self.orderer_operations_port),
            "ORDERER_TLS_DIR": str(self.orderer_tls_dir),
            "ORDERER_MSP_DIR": str(self.orderer_msp_dir),
            "ORDERER_DATA_DIR": str(self.orderer_dir / "data"),
        }

    def peer_values(self, org: PeerOrg) -> dict[str, str]:
        return {
            "PEER_NAME": org.peer_host,
            "PEER_PORT": str(org.port),
            "CHAINCODE_LISTEN_PORT": str(org.chaincode_port),
            "OPERATIONS_PORT": str(org.operations_port),
            "PEER_TLS_DIR": str(self.peer_tls_dir(org)),
            "PEER_MSP_DIR": str(self.peer_msp_dir(org)),
            "PEER_DATA_DIR": str(self.peer_dir(org) / "data"),
            "MSPID": org.mspid,
            "BUILDERS_DIR": str(NETWORK_DIR / "builders"),
            "GATEWAY_CONCURRENCY": str(GATEWAY_CONCURRENCY),
        }


def render(template: Path, values: dict[str, str]) -> str:
    """Fill ${NAME} fields; a field without a value is an error (a silently empty path breaks a node)."""
    return string.Template(template.read_text()).substitute(values)


def render_all(layout: Layout) -> None:
    """Write configtx.yaml, orderer.yaml and one core.yaml per peer into the run dir."""
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    (layout.config_dir / "configtx.yaml").write_text(
        render(NETWORK_DIR / "configtx.yaml", layout.configtx_values())
    )
    layout.orderer_dir.mkdir(parents=True, exist_ok=True)
    (layout.orderer_dir / "orderer.yaml").write_text(
        render(NETWORK_DIR / "orderer.yaml", layout.orderer_values())
    )
    for org in layout.orgs:
        d = layout.peer_dir(org)
        d.mkdir(parents=True, exist_ok=True)
        (d / "core.yaml").write_text(render(NETWORK_DIR / "core.yaml", layout.peer_values(org)))
