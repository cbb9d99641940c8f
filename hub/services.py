"""What the routers act through: timed, metered ledger calls, and the look-ups that apply visibility.

The visibility rule itself is `hub/billing/visibility.py` (one place); the look-ups here apply it to what
the ledger answers, and refuse with `hub.errors.NotFound` (404, exactly like an unknown id), which the API
maps to problem+json (hub/api/errors.py). `Metrics` lives in hub/metrics.py and is re-exported here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from hub.billing.answers import Answer
from hub.billing.client import ContractClient, OrgMapping, dumps
from hub.billing.visibility import may_see, may_see_asset, not_visible
from hub.config import Settings
from hub.errors import NotFound
from hub.ledger.base import ChaincodeRejected, Ledger
from hub.metrics import Metrics
from hub.principal import Principal

A = TypeVar("A", bound=Answer)

__all__ = ["LedgerGateway", "Metrics", "dumps", "may_see"]


class LedgerGateway:
    """The request-facing side of the `ContractClient` (which holds the org mapping, timing and metrics,
    ADR 0061): `client`, the one way to call the chaincode (typed answers, ADR 0064), and the look-ups
    that apply visibility."""

    def __init__(self, ledger: Ledger, settings: Settings, metrics: Metrics) -> None:
        self.ledger = ledger
        self.settings = settings
        self.metrics = metrics
        self.client = ContractClient(ledger, orgs=OrgMapping.from_settings(settings, ledger), metrics=metrics)
        self._parties: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def ledger_org(self, org: str) -> str:
        """The org whose ledger identity acts for `org` (`OrgMapping`: unknown orgs act as the provider)."""
        return self.client.ledger_org(org)

    # --- visibility -----------------------------------------------------------------------------

    @staticmethod
    def _record(read: Callable[[], A], kind: str, ident: str) -> A:
        """`read()` (a typed query asked as the caller); the chaincode's "unknown" and "forbidden" answers
        are the same 404 `unknown_<kind>` (a record of another party looks exactly like no record)."""
        try:
            return read()
        except ChaincodeRejected as exc:
            if exc.code in {f"unknown_{kind}", "forbidden"}:
                raise _not_found(f"unknown_{kind}", kind, ident) from None
            raise

    def contract(self, contract_id: str, principal: Principal) -> dict[str, Any]:
        """The contract, if the principal may see it; else 404 `unknown_contract` (also when unknown)."""
        contract = self._record(lambda: self.client.get_contract(contract_id, as_org=principal.org),
                                "contract", contract_id)
        if not may_see(principal, contract.provider, contract.customer):
            raise _not_found("unknown_contract", "contract", contract_id)
        with self._lock:
            self._parties[contract_id] = (contract.provider, contract.customer)
        return dict(contract.raw)

    def parties(self, contract_id: str, principal: Principal) -> tuple[str, str]:
        """(provider, customer) of a contract; parties never change, so they are cached."""
        with self._lock:
            cached = self._parties.get(contract_id)
        if cached is None:
            contract = self.contract(contract_id, principal)
            return contract["provider"], contract["customer"]
        if not may_see(principal, *cached):
            raise _not_found("unknown_contract", "contract", contract_id)
        return cached

    def asset(self, asset_id: str, principal: Principal) -> dict[str, Any]:
        """The asset, if the principal may see it (`may_see_asset`); else 404 `unknown_asset`."""
        asset = self._record(lambda: self.client.get_asset(asset_id, as_org=principal.org), "asset", asset_id)
        if not may_see_asset(principal, asset.provider):
            raise _not_found("unknown_asset", "asset", asset_id)
        return dict(asset.raw)

    def invoice(self, invoice_id: str, principal: Principal) -> dict[str, Any]:
        """The invoice, if the principal may see its contract; else 404 `unknown_invoice`."""
        invoice = self._record(lambda: self.client.get_invoice(invoice_id, as_org=principal.org),
                               "invoice", invoice_id)
        try:
            self.parties(invoice.contract_id, principal)
        except NotFound:
            raise _not_found("unknown_invoice", "invoice", invoice_id) from None
        return dict(invoice.raw)


def _not_found(code: str, kind: str, ident: str) -> NotFound:
    return not_visible(code, kind, ident)
