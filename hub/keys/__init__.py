"""Signers and key custody (HSM via PKCS#11; software keys for tests).

Entry points for the rest of the hub:
- `build_key_manager(settings)`: the `KeyManager` (put it on `Services.keys`).
- `build_signers(settings)`: `{org: Signer}` endorsement signers for the embedded ledger.
- `build_identities(settings)`: `{org: (msp_id, certificate, Signer)}` client identities for Fabric.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hub.keys.signer import Signer, SoftwareSigner

if TYPE_CHECKING:
    from cryptography import x509

    from hub.config import Settings
    from hub.keys.manager import KeyManager

log = logging.getLogger(__name__)

__all__ = [
    "Signer", "SoftwareSigner", "build_ca_certs", "build_identities", "build_key_manager", "build_signers",
]

_MANAGERS: dict[tuple[str, str], KeyManager] = {}


def orgs_of(settings: Settings) -> list[str]:
    """The founding orgs, and the hub's own org when it is another one (an org that joined later, e.g. a
    customer on a channel of its own: its hub needs its own CA and client key, ADR 0068)."""
    founding = [settings.provider_org, settings.customer_org, settings.auditor_org]
    return founding if settings.org is None or settings.org in founding else [*founding, settings.org]


def build_key_manager(settings: Settings, *, create_missing: bool = True) -> KeyManager:
    """The process's key manager for `settings.data_dir` (one per data dir and signer kind).

    pkcs11: uses `$data_dir/softhsm/softhsm2.conf` when `ledgerhub keys init` created it (else the
    SOFTHSM2_CONF already in the environment), logs in once with `settings.pin()`. With
    `create_missing`, the org keys (CA, endorser, client per org, documents for the provider) are
    created if absent, so a fresh data dir works without a separate init step.
    """
    from hub.keys.manager import KeyManager, Pkcs11Backend, SoftwareBackend

    keys_dir = settings.data_dir / "keys"
    cache_key = (str(keys_dir.resolve()), settings.signer)
    manager = _MANAGERS.get(cache_key)
    if manager is None:
        if settings.signer == "pkcs11":
            from hub.keys.pkcs11 import softhsm_conf_path, token_session

            conf = softhsm_conf_path(settings.data_dir)
            if conf.exists() and "softhsm" in settings.pkcs11_module:
                os.environ["SOFTHSM2_CONF"] = str(conf)
            token = token_session(settings.pkcs11_module, settings.pkcs11_token_label, settings.pin())
            backend: Pkcs11Backend | SoftwareBackend = Pkcs11Backend(token)
        else:
            backend = SoftwareBackend(keys_dir / "software")
        manager = _MANAGERS[cache_key] = KeyManager(keys_dir, backend)
    if create_missing:
        manager.ensure_org_keys(orgs_of(settings), [settings.provider_org])
    return manager


def build_signers(settings: Settings, operation: str | None = None) -> dict[str, Signer]:
    """The org signers the ledger acts with, PKCS#11 when `settings.signer == "pkcs11"`.

    embedded: `endorser-{org}` per org (certificates from the hub's org CAs, see `build_ca_certs`).
    fabric: `client-{msp}` per org whose certificate is issued by that org's Fabric CA: enrolled on the
    fly from the cryptogen CA named by network.json (`LEDGERHUB_FABRIC_NETWORK_DIR`), or earlier with
    `ledgerhub keys enroll`. Orgs without such a certificate are left out, so the Fabric client falls
    back to the network's own client identity for them (and logs that).
    """
    manager = build_key_manager(settings)
    if settings.ledger == "fabric":
        return _fabric_signers(settings, manager, operation or "fabric-proposal")
    op = operation or "embedded-endorsement"
    return {org: manager.signer(f"endorser-{org}", op) for org in orgs_of(settings)}


def _cryptogen_ca(client: dict[str, str]) -> tuple[Path, Path] | None:
    """`.../peerOrganizations/<domain>/users/<user>/msp` -> `.../peerOrganizations/<domain>/ca/`."""
    msp_dir = client.get("msp_dir")
    if not msp_dir:
        return None
    ca_dir = Path(msp_dir).resolve().parents[2] / "ca"
    certs = sorted(ca_dir.glob("*-cert.pem"))
    key = ca_dir / "priv_sk"
    if not certs or not key.exists():
        return None
    return certs[0], key


def _fabric_signers(settings: Settings, manager: KeyManager, operation: str) -> dict[str, Signer]:
    import json

    from hub.keys import certs as certs_mod

    out: dict[str, Signer] = {}
    orgs: dict[str, tuple[Path, Path] | None] = {}
    if settings.fabric_network_dir is not None:
        path = settings.fabric_network_dir
        info = json.loads((path / "network.json" if path.is_dir() else path).read_text())
        for org in info.get("orgs", {}).values():
            orgs[org["mspid"]] = _cryptogen_ca(org.get("client") or {})
    for msp in orgs_of(settings):
        orgs.setdefault(msp, None)
    if settings.org is not None:  # a hub of one org holds that org's key only (ADR 0065)
        orgs = {msp: ca for msp, ca in orgs.items() if msp == settings.org}
    for msp, ca in orgs.items():
        name = f"client-{msp}"
        manager.ensure(name, msp, "client")
        if ca is not None:
            ca_cert = certs_mod.load_cert(ca[0].read_bytes())
            if not certs_mod.verify_issued_by(manager.certificate(name), ca_cert):
                manager.enroll_external(name, ca[0], ca[1])
                log.info("enrolled %s with the Fabric CA of %s", name, msp)
        if manager.external_ca(name):
            out[msp] = manager.signer(name, operation)
        else:
            log.warning("no Fabric CA certificate for %s: the network's client identity will be used", msp)
    return out


def build_identities(
    settings: Settings, operation: str = "fabric-proposal"
) -> dict[str, tuple[str, x509.Certificate, Signer]]:
    """Client identities per org for the Fabric gateway: (msp_id, certificate, signer).

    For a real Fabric network the certificate must come from the org's CA: run
    `hub.keys.certs.enroll_with_ca` (or `ledgerhub keys enroll`) first; until then the certificate is
    the one issued by the hub's own org CA (fine for the embedded ledger only).
    """
    manager = build_key_manager(settings)
    if settings.ledger == "fabric":
        signers = _fabric_signers(settings, manager, operation)
    else:
        signers = {org: manager.signer(f"client-{org}", operation) for org in orgs_of(settings)}
    return {org: (org, s.certificate(), s) for org, s in signers.items()}  # type: ignore[misc]


def build_ca_certs(settings: Settings) -> dict[str, list[x509.Certificate]]:
    """The org CA certificates (CA keys on the token) per org: pass as `EmbeddedLedger(ca_certs=...)`
    so the network trusts the org, not one leaf certificate, and rotated endorser keys stay valid."""
    manager = build_key_manager(settings)
    return {org: [manager.certificate(f"ca-{org}")] for org in orgs_of(settings)}
