"""What the routers act through: metrics, timed ledger calls, and the look-ups that decide visibility.

Visibility is enforced here, in one place: a principal sees a contract (and its invoices and usage) only
when its org is the contract's provider or customer, or when it is an auditor. Anything else answers
exactly like an unknown id (404), so ids of other parties' objects cannot be probed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chaincode.errors import ERROR_STATUS, ChaincodeError
from hub.api.deps import Principal
from hub.api.problems import ApiError
from hub.config import Settings
from hub.ledger.base import ChaincodeRejected, Commit, Ledger, LedgerError


class Metrics:
    """Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.readings_accepted = Counter(
            "ledgerhub_readings_accepted", "Readings committed to the ledger", registry=r
        )
        self.readings_rejected = Counter(
            "ledgerhub_readings_rejected", "Readings refused (edge or chaincode)", ["code"], registry=r
        )
        self.readings_duplicate = Counter(
            "ledgerhub_readings_duplicate", "Readings skipped as already recorded", registry=r
        )
        self.messages = Counter(
            "ledgerhub_usage_messages", "Usage messages answered, by outcome", ["outcome"], registry=r
        )
        self.batch_size = Histogram(
            "ledgerhub_usage_batch_messages",
            "Usage messages per RecordUsage transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.queue_depth = Gauge("ledgerhub_usage_queue_depth", "Usage messages waiting", registry=r)
        self.ledger_latency = Histogram(
            "ledgerhub_ledger_call_seconds",
            "Latency of ledger calls, by kind and function",
            ["kind", "fn"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ledger_errors = Counter(
            "ledgerhub_ledger_errors", "Ledger call failures, by error class", ["error"], registry=r
        )
        self.invoices_closed = Counter(
            "ledgerhub_periods_closed", "Billing periods closed, by trigger", ["trigger"], registry=r
        )
        self.projected_events = Counter(
            "ledgerhub_projected_events", "Ledger events applied to the read models", ["name"], registry=r
        )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# titles for codes whose name alone does not say what happened
_TITLES = {
    # 503: the hub's clock (which stamps proposals) and an endorsing peer's disagree; nothing was written,
    # the request can be retried as it is once the clocks agree (ADR 0027)
    "tx_timestamp_skew": "Ledger peer refused: clock skew between the hub and the peer",
}


def chaincode_problem(error: ChaincodeError) -> ApiError:
    """A chaincode refusal as the API's problem+json: same code, status from ERROR_STATUS."""
    extra = {k: v for k, v in error.details.items() if k not in {"type", "title", "status", "code"}}
    title = _TITLES.get(error.code) or error.code.replace("_", " ").capitalize()
    return ApiError(ERROR_STATUS.get(error.code, 400), error.code, title, error.message, **extra)


class LedgerGateway:
    """Timed, metered ledger calls that speak JSON. One place to map the hub's orgs to ledger identities."""

    def __init__(self, ledger: Ledger, settings: Settings, metrics: Metrics) -> None:
        self.ledger = ledger
        self.settings = settings
        self.metrics = metrics
        self._parties: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def ledger_org(self, org: str) -> str:
        """Orgs without a ledger identity (an operator's org, a device's gateway) act as the provider org,
        whose hub runs them; the chaincode still authorises every call by org. An org that joined the
        Fabric network later (`ledgerhub network add-org`, ADR 0054) acts as itself once the ledger holds
        an identity for it (network.json lists it)."""
        known = {self.settings.provider_org, self.settings.customer_org, self.settings.auditor_org,
                 *self.settings.extra_ledger_orgs}
        if org in known or self._ledger_has_identity(org):
            return org
        return self.settings.provider_org

    def _ledger_has_identity(self, org: str) -> bool:
        identity = getattr(self.ledger, "identity", None)  # FabricLedger: one identity per org it acts for
        if identity is None:
            return False
        try:
            identity(org)
        except LedgerError:  # "no identity for org": it acts as the provider org, as before
            return False
        return True

    def evaluate(self, fn: str, arg: Mapping[str, Any], *, as_org: str) -> Any:
        started = time.perf_counter()
        try:
            raw = self.ledger.evaluate(fn, [dumps(arg)], as_org=self.ledger_org(as_org))
        except Exception as exc:
            self.metrics.ledger_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self.metrics.ledger_latency.labels("evaluate", fn).observe(time.perf_counter() - started)
        return json.loads(raw) if raw else None

    def read_as_hub(self, fn: str, arg: Mapping[str, Any]) -> Any:
        """A query for the hub's own bookkeeping (read models, aggregates), not for a caller: asked as each
        org this hub holds an identity for, until one may read it (the chaincode answers `forbidden` to an
        org that is no party to the record)."""
        settings = self.settings
        last: ChaincodeRejected | None = None
        for org in (settings.provider_org, settings.customer_org, settings.auditor_org):
            try:
                return self.evaluate(fn, arg, as_org=org)
            except ChaincodeRejected as exc:
                if exc.code != "forbidden":
                    raise
                last = exc
        assert last is not None
        raise last

    def submit(self, fn: str, arg: Mapping[str, Any], *, as_org: str) -> tuple[Commit, Any]:
        started = time.perf_counter()
        try:
            commit = self.ledger.submit(fn, [dumps(arg)], as_org=self.ledger_org(as_org))
        except Exception as exc:
            self.metrics.ledger_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self.metrics.ledger_latency.labels("submit", fn).observe(time.perf_counter() - started)
        return commit, (json.loads(commit.payload) if commit.payload else None)

    # --- visibility -----------------------------------------------------------------------------

    def contract(self, contract_id: str, principal: Principal) -> dict[str, Any]:
        """The contract, if the principal may see it; else 404 `unknown_contract` (also when unknown)."""
        try:
            contract = self.evaluate("GetContract", {"id": contract_id}, as_org=principal.org)
        except ChaincodeRejected as exc:
            if exc.code in {"unknown_contract", "forbidden"}:
                raise _not_found("unknown_contract", "contract", contract_id) from None
            raise
        if not may_see(principal, contract["provider"], contract["customer"]):
            raise _not_found("unknown_contract", "contract", contract_id)
        with self._lock:
            self._parties[contract_id] = (contract["provider"], contract["customer"])
        return contract

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

    def invoice(self, invoice_id: str, principal: Principal) -> dict[str, Any]:
        try:
            invoice = self.evaluate("GetInvoice", {"id": invoice_id}, as_org=principal.org)
        except ChaincodeRejected as exc:
            if exc.code in {"unknown_invoice", "forbidden"}:
                raise _not_found("unknown_invoice", "invoice", invoice_id) from None
            raise
        try:
            self.parties(invoice["contract_id"], principal)
        except ApiError:
            raise _not_found("unknown_invoice", "invoice", invoice_id) from None
        return invoice


def may_see(principal: Principal, provider: str, customer: str) -> bool:
    if principal.role == "auditor":
        return True
    if principal.role == "provider":
        return principal.org == provider
    if principal.role == "customer":
        return principal.org == customer
    # operators and devices act on contracts of their org but do not read them through these routes
    return principal.org in {provider, customer}


def _not_found(code: str, kind: str, ident: str) -> ApiError:
    return ApiError(404, code, f"Unknown {kind}", f"no {kind} {ident!r} visible to this caller")
