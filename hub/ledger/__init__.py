"""The hub's door to the ledger: `open_ledger` picks the implementation named by the settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hub.ledger.base import Ledger

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.keys.signer import Signer


def open_ledger(settings: Settings, signers: Mapping[str, Signer]) -> Ledger:
    """Open the ledger named by `settings.ledger` acting with the given org signers.

    embedded: the in-process network under `settings.data_dir` (created at first start; its chaincode
    policy is "a member of the provider org OR the customer org", see docs/chaincode.md).
    """
    if settings.ledger == "embedded":
        from hub.ledger.embedded import EmbeddedLedger  # keeps sqlite code out of fabric runs

        return EmbeddedLedger(
            settings.data_dir,
            signers,
            chaincode_orgs=(settings.provider_org, settings.customer_org),
            chaincode_name=settings.fabric_chaincode,
        )
    if settings.ledger == "fabric":
        from hub.ledger.fabric import open_fabric_ledger  # grpc clients only when asked for

        return open_fabric_ledger(settings, signers)
    raise NotImplementedError(f"ledger {settings.ledger!r} is not available in this build")


__all__ = ["Ledger", "open_ledger"]
