"""The hub's `Ledger` on Hyperledger Fabric, through the Fabric Gateway service (ADR 0012).

`open_fabric_ledger(settings, signers)` builds a `FabricLedger` from either the dev network's description
(`settings.fabric_network_dir/network.json`, written by `network/`) or a single gateway address
(`settings.fabric_gateway` + `settings.fabric_tls_root`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.ledger.channel import ChannelRefused, choose_channel
from hub.ledger.fabric.client import FabricLedger, GatewayEndpoint, InsecureGateway, Timeouts
from hub.ledger.fabric.identity import FabricIdentity, identity_from_signer, load_msp_identity

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.keys.signer import Signer

log = logging.getLogger("ledgerhub.ledger")


def load_network(path: Path) -> dict[str, Any]:
    """network.json, given the file or the folder holding it."""
    file = path / "network.json" if path.is_dir() else path
    return json.loads(file.read_text())


def _identity(msp_id: str, signer: Signer | None, client: Mapping[str, str] | None) -> FabricIdentity | None:
    if signer is not None and signer.certificate() is not None:
        return identity_from_signer(msp_id, signer)
    if client and client.get("msp_dir"):
        return load_msp_identity(msp_id, Path(client["msp_dir"]))  # cryptogen user: dev networks only
    return None


def open_fabric_ledger(
    settings: Settings, signers: Mapping[str, Signer] | None = None, *, timeouts: Timeouts | None = None
) -> FabricLedger:
    """Signers are keyed by MSP id; a signer needs a certificate issued by its org's CA. Without one (dev
    network), the org's cryptogen client identity from network.json is used. A hub of one org
    (`settings.org`, ADR 0065) gets only that org's identity and its own peer's gateway: the ledger cannot
    act as any other org.

    The channel (ADR 0068): `settings.fabric_channel` when set, else network.json's default `channel`.
    With network.json's `channels` map, only that channel's member orgs are opened, and a hub whose org is
    not a member, or a channel the map does not name, is refused (`ChannelRefused`) before any connection."""
    only = settings.org
    signers = {k: v for k, v in (signers or {}).items() if only is None or k == only}
    identities: dict[str, FabricIdentity] = {}
    gateways: dict[str, GatewayEndpoint] = {}
    chaincode = settings.fabric_chaincode
    if settings.fabric_network_dir is not None:
        info = load_network(settings.fabric_network_dir)
        choice = choose_channel(info, settings.fabric_channel, only)
        channel, members = choice.channel, set(choice.members or ())
        chaincode = info.get("chaincode", {}).get("name", chaincode)
        for org in info["orgs"].values():
            msp_id, peer = org["mspid"], org["peer"]
            if (only is not None and msp_id != only) or msp_id not in members:
                continue
            gateways[msp_id] = GatewayEndpoint(
                address=peer["endpoint"],
                tls_root_pem=Path(peer["tls_root_cert"]).read_bytes() if peer.get("tls_root_cert") else None,
                server_name=peer.get("host_name"),
                insecure=settings.fabric_insecure,
            )
            identity = _identity(msp_id, signers.get(msp_id), org.get("client"))
            if identity is not None:
                identities[msp_id] = identity
    elif settings.fabric_gateway:
        channel = choose_channel(None, settings.fabric_channel, only).channel
        tls = settings.fabric_tls_root.read_bytes() if settings.fabric_tls_root else None
        gateways["*"] = GatewayEndpoint(settings.fabric_gateway, tls, insecure=settings.fabric_insecure)
        for msp_id, signer in signers.items():
            identity = _identity(msp_id, signer, None)
            if identity is not None:
                identities[msp_id] = identity
    else:
        raise ValueError("ledger=fabric needs LEDGERHUB_FABRIC_NETWORK_DIR or LEDGERHUB_FABRIC_GATEWAY")
    if not identities:
        if only is not None:
            raise ValueError(f"no identity for {only} (LEDGERHUB_ORG) on this Fabric network")
        if settings.fabric_network_dir is not None:
            raise ValueError(f"no org identity with a certificate among channel {channel!r}'s members")
        raise ValueError("no org identity with a certificate for the Fabric ledger")
    if only is not None:
        default_org = only
    else:
        default_org = settings.provider_org if settings.provider_org in identities else next(iter(identities))
    log.info("Fabric ledger: channel %s, orgs %s", channel, ", ".join(identities))
    return FabricLedger(
        channel=channel,
        chaincode=chaincode,
        identities=identities,
        gateways=gateways,
        default_org=default_org,
        timeouts=timeouts or Timeouts(**settings.fabric_timeouts.model_dump()),
    )


__all__ = [
    "ChannelRefused",
    "FabricIdentity",
    "FabricLedger",
    "GatewayEndpoint",
    "InsecureGateway",
    "Timeouts",
    "load_network",
    "open_fabric_ledger",
]
