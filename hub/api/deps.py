"""Request dependencies shared by every router: who is calling, and the typed services they act through.

Routers get the caller with `Depends(require_roles("provider"))` and a service with an `Annotated`
dependency (`gw: GatewayDep`, `ingestor: IngestorDep`, ...); each provider reads one typed field of the
`Services` the app factory puts on `app.state.services` (ADR 0062). `Principal` lives in hub/principal.py
(below the API, so services can take a caller) and is re-exported here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from hub.api.problems import ApiError
from hub.config import Role, Settings, secret_value
from hub.errors import WrongHubOrg
from hub.ingest import Ingestor
from hub.metrics import Metrics
from hub.principal import Principal
from hub.scheduler import Clock, HubScheduler, PeriodCloser
from hub.services import LedgerGateway
from hub.store.projector import Projector
from hub.store.usage_days import UsageDays

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hub.bank.money_jobs import MoneyJobs
    from hub.bank.sepa import SepaCollector
    from hub.bank.service import BankImporter
    from hub.delivery.egress import Resolver
    from hub.delivery.lifecycle import LifecycleEvents
    from hub.delivery.service import DeliveryService
    from hub.keys.manager import KeyManager
    from hub.portal.alerts import AlertService

__all__ = [
    "GatewayDep",
    "IngestorDep",
    "MetricsDep",
    "NowDep",
    "Principal",
    "ProjectorDep",
    "Services",
    "ServicesDep",
    "authenticate",
    "get_services",
    "require_roles",
]


@dataclass
class Services:
    """Everything a request may use, each part a typed field. Optional parts are None when that area is not
    configured; the parts an area builds on first use (alerts, bank, sepa, money) are None until then."""

    settings: Settings
    ledger: Any  # hub.ledger.base.Ledger
    db: Any  # sqlalchemy.orm.sessionmaker
    keys: KeyManager | None = None
    delivery: DeliveryService | None = None
    engine: Engine | None = None
    metrics: Metrics | None = None
    gateway: LedgerGateway | None = None
    ingestor: Ingestor | None = None
    projector: Projector | None = None
    closer: PeriodCloser | None = None
    scheduler: HubScheduler | None = None
    clock: Clock | None = None
    usage_days: UsageDays | None = None
    lifecycle: LifecycleEvents | None = None
    areas: list[str] = field(default_factory=list)
    # injected by tests or a configure hook
    resolver: Resolver | None = None  # the egress checks' DNS answers (tests pin a name's answers)
    proof_builder: Callable[..., Any] | None = None  # (services, invoice_id, principal) -> bundle
    webhook_enqueue: Callable[..., Any] | None = None  # where alert and bank webhooks are queued
    # built on first use by their area
    alerts: AlertService | None = None
    bank: BankImporter | None = None
    sepa: SepaCollector | None = None
    money: MoneyJobs | None = None
    portal_verified: dict[str, dict[str, Any]] = field(default_factory=dict)

    def now(self) -> dt.datetime:
        """The hub's clock (tests freeze it), else the wall clock."""
        return self.clock() if self.clock is not None else dt.datetime.now(dt.UTC)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _wired(value: Any, name: str) -> Any:
    if value is None:
        raise RuntimeError(f"services.{name} is not wired (create_app wires it)")
    return value


def get_gateway(services: ServicesDep) -> LedgerGateway:
    return _wired(services.gateway, "gateway")


def get_projector(services: ServicesDep) -> Projector:
    return _wired(services.projector, "projector")


def get_ingestor(services: ServicesDep) -> Ingestor:
    return _wired(services.ingestor, "ingestor")


def get_metrics(services: ServicesDep) -> Metrics:
    return _wired(services.metrics, "metrics")


def get_now(services: ServicesDep) -> dt.datetime:
    """The hub's clock read once for the request."""
    return services.now()


GatewayDep = Annotated[LedgerGateway, Depends(get_gateway)]
ProjectorDep = Annotated[Projector, Depends(get_projector)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
NowDep = Annotated[dt.datetime, Depends(get_now)]


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "Missing bearer token", "Send Authorization: Bearer <token>.")
    settings: Settings = get_services(request).settings
    grant = None
    token_bytes = token.encode()
    for candidate, value in settings.tokens.items():
        # compare against every token, in constant time, so timing does not reveal a prefix match
        if hmac.compare_digest(secret_value(candidate).encode(), token_bytes):
            grant = value
    if grant is None:
        raise ApiError(401, "invalid_token", "Invalid bearer token")
    if grant.expires_at and dt.datetime.fromisoformat(grant.expires_at) <= dt.datetime.now(dt.UTC):
        raise ApiError(401, "token_expired", "Bearer token expired")
    if not settings.acts_for(grant.org):  # one hub per org (ADR 0065): another org's users go to its hub
        raise WrongHubOrg(detail=f"this hub serves {settings.org}; use the hub of {grant.org}")
    return Principal(org=grant.org, role=grant.role, token_id=hashlib.sha256(token_bytes).hexdigest()[:12],
                     scope=grant.scope)


def require_roles(*roles: Role) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if principal.role not in roles:
            raise ApiError(
                403, "forbidden", "Not allowed for this role", f"role {principal.role!r} cannot do this"
            )
        return principal

    return dependency
