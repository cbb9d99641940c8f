"""The hub's door to the ledger: `open_ledger` picks the implementation named by the settings."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hub.ledger.base import Ledger
from hub.ledger.channel import refuse_channel_on_embedded

if TYPE_CHECKING:
    from cryptography import x509

    from hub.config import Settings
    from hub.keys.signer import Signer

log = logging.getLogger("ledgerhub.ledger")


def open_ledger(
    settings: Settings,
    signers: Mapping[str, Signer],
    *,
    ca_certs: Mapping[str, Sequence[x509.Certificate]] | None = None,
) -> Ledger:
    """Open the ledger named by `settings.ledger` acting with the given org signers.

    embedded: the in-process network under `settings.data_dir` (created at first start; its chaincode
    policy is "a member of the provider org OR the customer org", see docs/chaincode.md). `ca_certs` are
    the org roots written into a new network's genesis block; by default, when every signer carries a
    certificate issued by the key area's org CA (`hub.keys.build_ca_certs`), those CAs are the roots, so
    rotated keys stay trusted. Signers without certificates get them from a per-org CA the ledger makes.
    """
    refuse_channel_on_embedded(settings.ledger, settings.fabric_channel)  # one channel by nature (ADR 0068)
    if settings.ledger == "embedded":
        from hub.ledger.embedded import EmbeddedLedger  # keeps sqlite code out of fabric runs

        return EmbeddedLedger(
            settings.data_dir,
            signers,
            chaincode_orgs=(settings.provider_org, settings.customer_org),
            chaincode_name=settings.fabric_chaincode,
            ca_certs=ca_certs if ca_certs is not None else _key_area_roots(settings, signers),
            block_max_txs=settings.ledger_block_max_txs,  # block cutting
            block_timeout=settings.ledger_block_timeout_ms / 1000,
            max_clock_skew=_max_clock_skew(settings),
        )
    if settings.ledger == "fabric":
        from hub.ledger.fabric import open_fabric_ledger  # grpc clients only when asked for

        return open_fabric_ledger(settings, signers)
    raise NotImplementedError(f"ledger {settings.ledger!r} is not available in this build")


def _max_clock_skew(settings: Settings) -> dt.timedelta | None:
    """The embedded peers' bound on proposal timestamps (ADR 0027); None when the setting is 0 (off)."""
    seconds = settings.ledger_max_clock_skew_seconds
    return dt.timedelta(seconds=seconds) if seconds > 0 else None


def _key_area_roots(
    settings: Settings, signers: Mapping[str, Signer]
) -> Mapping[str, Sequence[x509.Certificate]] | None:
    """The key area's org CA certificates, if (and only if) they issued every signer's certificate."""
    certs = {org: s.certificate() for org, s in signers.items()}
    if not certs or any(c is None for c in certs.values()):
        return None
    try:
        from hub.keys import build_ca_certs

        roots = build_ca_certs(settings)
    except Exception as exc:  # the key area is optional here: fall back to pinning the leaf certificates
        log.info("org CA certificates unavailable (%s); pinning signer certificates", exc)
        return None
    for org, cert in certs.items():
        assert cert is not None
        try:
            cert.verify_directly_issued_by(roots[org][0])
        except Exception:
            return None
    return roots


__all__ = ["Ledger", "open_ledger"]
