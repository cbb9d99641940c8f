"""The `Connector` interface every ERP integration implements, its error types, and the registry.

Connectors never import the ledger or the hub: they receive an `InvoiceDocument` (plain data), a
`Delivery` (the fixed ids of this attempt to deliver), and return an `ErpRef`. The delivery engine calls
`deliver`; after an unclear outcome it calls `lookup` before sending again, which is what makes retries
safe; reconciliation calls `status`.

Connectors are found through the `ledgerhub.connectors` entry-point group, so an integrator's package
adds one without touching this repository:

    [project.entry-points."ledgerhub.connectors"]
    my-erp = "my_package.connector:MyErpConnector"

The entry point names a class (or factory) called as `factory(config)` with a `ConnectorConfig`.

Most connectors deliver invoices (`InvoiceDocument`, read from the ledger). A *message connector* (class
attribute `receives = MESSAGE`; the hub's `webhook` is one) sends what the hub composed itself and stored in
the outbox row: it gets an `OutboxMessage` from its `prepare(payload)`, is never asked to `lookup` (its
receivers de-duplicate on the delivery id), and nothing about it is recorded on the ledger. Retries,
backoff, the circuit breaker and dead letters are the same for both kinds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

ENTRY_POINT_GROUP = "ledgerhub.connectors"

Target = Literal["provider", "customer"]
"""Whose ERP: the provider books a receivable (AR), the customer a payable (AP)."""


@dataclass(frozen=True)
class Party:
    """Master data of one org as ERPs and e-invoices need it."""

    org: str  # MSP id, e.g. "ProviderMSP"
    name: str
    country: str = "DE"  # ISO 3166-1 alpha-2
    vat_id: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    email: str | None = None
    # this party's id in each ERP, e.g. {"sap_customer": "10100001", "oracle_supplier": "Provider GmbH"}
    erp_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InvoiceDocument:
    """What a connector receives: the ledger invoice (API.md shape, amounts as decimal strings), the contract
    it was rated under, and both parties. `signature` is the provider's detached signature over the canonical
    JSON invoice (`{"jws", "kid"}`), and `sign_xml` signs an XML rendering with the same key, when the hub
    signs documents (hub.keys: the key stays in the HSM; the connector only gets the function)."""

    invoice: Mapping[str, Any]
    contract: Mapping[str, Any]
    seller: Party
    buyer: Party
    signature: Mapping[str, str] | None = None
    # signs an XML document (UBL) with the provider's document key, enveloped; None when the hub has no key
    sign_xml: Callable[[bytes], bytes] | None = None

    @property
    def invoice_id(self) -> str:
        return str(self.invoice["id"])

    @property
    def is_credit_note(self) -> bool:
        return self.invoice.get("type") == "credit_note"


@dataclass(frozen=True)
class Delivery:
    """The fixed identity of delivering one invoice to one target. Reused unchanged on every retry."""

    id: str  # e.g. "dlv-inv-ctr-mri-001-2026-10-provider"
    message_uuid: str  # RFC 4122 UUID sent as the ERP's idempotency key (SAP MessageHeader/UUID)
    invoice_id: str
    target: Target
    attempt: int = 1


@dataclass(frozen=True)
class ErpRef:
    """Where an invoice landed in an ERP."""

    system: str  # connector name, e.g. "sap-soap"
    document_id: str  # the ERP's document number
    target: Target
    details: Mapping[str, str] = field(default_factory=dict)  # e.g. fiscal year, company code


@dataclass(frozen=True)
class OutboxMessage:
    """What a message connector delivers: the payload stored in the outbox row when the hub enqueued it, and
    the receiver it goes to (the circuit breaker's key: one failing receiver does not hold up others)."""

    payload: Mapping[str, Any]
    receiver: str


INVOICE = "invoice"
MESSAGE = "message"


def receives(factory: Any) -> str:
    """What a registered connector class (or factory) delivers: `INVOICE` unless it says `MESSAGE`."""
    return MESSAGE if getattr(factory, "receives", INVOICE) == MESSAGE else INVOICE


ErpState = Literal["open", "partially_paid", "paid", "cancelled"]


@dataclass(frozen=True)
class Payment:
    payment_id: str  # stable id from the ERP (clearing document, receipt number...)
    amount: Decimal
    paid_at: dt.datetime | None = None


@dataclass(frozen=True)
class ErpStatus:
    state: ErpState
    amount: Decimal  # document amount
    paid_amount: Decimal
    currency: str
    payments: tuple[Payment, ...] = ()


@dataclass(frozen=True)
class ConnectorConfig:
    """How a connector instance is set up: its name, the target it serves and its own settings
    (endpoint, credentials, WSDL location...) taken from hub settings."""

    name: str
    target: Target
    # not in the repr: settings hold ERP passwords and client secrets, and reprs end up in logs and
    # exception messages; __repr__ names the keys only
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # the hub's egress check for URLs a tenant chose (hub.delivery.egress.Egress: `check(url)` -> the
    # checked target); a connector that sends to such URLs (webhooks) must go through it
    egress: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        keys = ", ".join(self.settings)
        return f"ConnectorConfig(name={self.name!r}, target={self.target!r}, settings=<{keys}>)"


@runtime_checkable
class Connector(Protocol):
    name: str

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        """Post the invoice. Raises RetryableError / UnclearOutcome / BusinessRejection."""
        ...

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        """Find a previous posting of this delivery (by message UUID and/or invoice number)."""
        ...

    def status(self, ref: ErpRef) -> ErpStatus: ...

    def close(self) -> None: ...


# --- errors ------------------------------------------------------------------------------------


class ConnectorError(Exception):
    """Base of connector failures. `code` is stable and shows up in delivery records and problem+json."""

    code = "connector_error"
    retryable = False

    def __init__(self, message: str, *, erp_messages: list[str] | None = None) -> None:
        super().__init__(message)
        self.erp_messages = list(erp_messages or [])


class RetryableError(ConnectorError):
    """Nothing was posted (connection refused, 503 before processing...). Send again after a backoff."""

    code = "erp_unavailable"
    retryable = True


class UnclearOutcome(RetryableError):
    """The request may or may not have been posted (timeout, reset, 5xx, 202 without body).
    The dispatcher must `lookup` before sending again."""

    code = "erp_unclear_outcome"


class BusinessRejection(ConnectorError):
    """The ERP understood and refused (validation, closed period, unknown customer). Not retried:
    the delivery goes to the dead-letter state with the ERP's messages for an operator."""

    code = "erp_rejected"


class ConnectorConfigError(ConnectorError):
    code = "connector_misconfigured"


# --- registry ----------------------------------------------------------------------------------

ConnectorFactory = Callable[[ConnectorConfig], Connector]


class ConnectorRegistry:
    """Connector factories by name: the entry-point group, plus any registered in-process (tests, plugins
    loaded by configuration)."""

    def __init__(self) -> None:
        self._extra: dict[str, ConnectorFactory] = {}

    def register(self, name: str, factory: ConnectorFactory) -> None:
        self._extra[name] = factory

    def names(self) -> list[str]:
        return sorted(set(self._extra) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})

    def factory(self, name: str) -> ConnectorFactory:
        if name in self._extra:
            return self._extra[name]
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return ep.load()
        installed = ", ".join(self.names()) or "-"
        raise ConnectorConfigError(f"no connector named {name!r}; installed: {installed}")

    def create(self, config: ConnectorConfig) -> Connector:
        return self.factory(config.name)(config)


registry = ConnectorRegistry()
