"""The app factory: one FastAPI app wired to one ledger, one database and the hub's background workers.

`create_app(settings, ledger)` is all a test, the CLI or an ASGI server needs. Background work (the usage
batcher, the event projector, the scheduler) starts and stops with the app's lifespan, so a TestClient used
as a context manager, or uvicorn, runs the whole hub in-process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.deps import Services
from hub.api.errors import install_error_handlers, problem_response
from hub.api.limits import StrictJsonMiddleware, install_failed_auth_limit, install_rate_limit
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError, Problem
from hub.api.routers import (
    amendments,
    assets,
    audit,
    bookings,
    contracts,
    deliveries,
    health,
    invoices,
    keys,
    periods,
    usage,
    webhooks,
)
from hub.bank import mandate_router as bank_mandates
from hub.bank import router as bank_statements
from hub.config import Settings
from hub.delivery import service as delivery_service
from hub.delivery.lifecycle import LifecycleEvents
from hub.ingest import Ingestor, Reading, UsageMessage
from hub.ingest_capacity import Capacity
from hub.ingest_pipeline import PIPELINE_DEPTH_DEFAULT
from hub.keys import build_key_manager, build_signers
from hub.ledger import open_ledger
from hub.metrics import Metrics
from hub.portal import data as portal_data
from hub.portal import router as portal
from hub.portal import views as portal_views
from hub.scheduler import Clock, HubScheduler, Lease, PeriodCloser, utcnow
from hub.services import LedgerGateway
from hub.store.projector import Projector
from hub.store.session import make_engine, make_sessionmaker, migrate
from hub.store.usage_days import UsageDays

log = logging.getLogger("ledgerhub.api")

# every router of the hub, in the order they are included
ROUTERS: tuple[APIRouter, ...] = (
    health.router, assets.router, contracts.router, usage.router, periods.router, invoices.router,
    amendments.router, bookings.router, keys.router, deliveries.router, audit.router, portal.router,
    portal_data.router, portal_views.router, bank_statements.router, bank_mandates.router, webhooks.router,
)
__all__ = ["ROUTERS", "create_app", "default_signers", "pipeline_depth", "problem_response", "wire_areas"]


class PayloadTooLarge(ApiError, StarletteHTTPException):
    """Also an HTTPException, so FastAPI's body reader re-raises it untouched instead of answering 400."""

    def __init__(self, limit: int) -> None:
        ApiError.__init__(self, 413, "payload_too_large", "Payload too large",
                          f"the body exceeds the limit of {limit} bytes", limit=limit)
        self.status_code = 413
        self.headers = None


class BodyLimitMiddleware:
    """Refuse bodies over the limit before anything parses them: by Content-Length when declared, else
    by counting the streamed bytes (the route's body read fails as soon as the limit is crossed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    response = problem_response(PayloadTooLarge(self.limit))
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


def default_signers(settings: Settings) -> dict[str, Any]:
    """Org signers from the key area: HSM or persisted software keys (hub/keys)."""
    return build_signers(settings)


def pipeline_depth(settings: Settings) -> int:
    """Usage transactions in flight at once: the setting, else the ledger's default (ADR 0039)."""
    return settings.ingest_pipeline_depth or PIPELINE_DEPTH_DEFAULT.get(settings.ledger, 1)


def _open_default_ledger(settings: Settings) -> Any:
    """The ledger the settings name: the embedded one by default, Fabric through its gateway."""
    return open_ledger(settings, default_signers(settings))


AREAS = ("keys", "delivery")


def wire_areas(services: Services, areas: tuple[str, ...]) -> list[str]:
    """Put other areas' services on `Services`: the key manager (`/v1/keys`) and the ERP delivery engine
    (`/v1/deliveries`, event consumer, reconciliation job). Their code always ships; an area whose
    configuration does not let it start (no key store, no delivery targets) is logged with the reason and
    left out, and the core API keeps working without it (its routes answer 503)."""
    wired = []
    for area in areas:
        if area not in AREAS:
            raise ValueError(f"unknown area {area!r}")
        try:
            if area == "keys":
                services.keys = build_key_manager(services.settings)
            else:
                delivery_service.install(services, start=False)  # started with the app's lifespan
        except Exception:
            log.exception("could not wire area %s; continuing without it", area)
            continue
        wired.append(area)
    return wired


def create_app(
    settings: Settings,
    ledger: Any = None,
    *,
    clock: Clock = utcnow,
    background: bool = True,
    scheduler: bool | None = None,
    configure: Callable[[Services], None] | None = None,
    areas: tuple[str, ...] | None = None,
) -> FastAPI:
    """Build the hub app. `ledger=None` opens the ledger the settings name (and closes it on shutdown).
    `background=False` leaves the projector and scheduler off (tests drive them by hand); the usage
    batcher always runs, since ingestion needs it. `areas` names the other areas to wire (`keys`,
    `delivery`); by default all of them when the app opens its own ledger (`ledgerhub serve`), none when a
    ledger is handed in (tests, the demo). `configure` lets the CLI or another area add services."""
    owns_ledger = ledger is None
    if ledger is None:
        ledger = _open_default_ledger(settings)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    metrics = Metrics()
    gateway = LedgerGateway(ledger, settings, metrics)
    ingestor = Ingestor(gateway, db, metrics, max_batch=settings.batch_max_messages,
                        max_readings=settings.max_readings_per_message,
                        batch_max_readings=settings.batch_max_readings,
                        batch_max_bytes=settings.batch_max_bytes,
                        capacity=Capacity.from_settings(settings),
                        pipeline_depth=pipeline_depth(settings))
    projector = Projector(gateway, db, metrics)
    usage_days = UsageDays(gateway, db)  # daily aggregates for the portal's charts (ADR 0044)
    projector.followers.append(usage_days)
    lifecycle = LifecycleEvents(gateway, db)  # lifecycle webhooks from the event stream (ADR 0053)
    projector.followers.append(lifecycle)
    closer = PeriodCloser(gateway, db, projector, metrics, grace_seconds=settings.close_grace_seconds,
                          clock=clock)
    services = Services(settings=settings, ledger=ledger, db=db, engine=engine, metrics=metrics,
                        gateway=gateway, ingestor=ingestor, projector=projector, closer=closer, clock=clock,
                        usage_days=usage_days, lifecycle=lifecycle)
    run_scheduler = settings.scheduler_enabled if scheduler is None else scheduler
    hub_scheduler = HubScheduler(services, closer, Lease(db, HubScheduler.default_holder(), clock=clock))
    services.scheduler = hub_scheduler
    services.areas = wire_areas(services, AREAS if areas is None and owns_ledger else areas or ())
    if configure is not None:
        configure(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ingestor.start()
        if background:
            projector.start()
            if services.delivery is not None:
                services.delivery.start()
            if run_scheduler:
                hub_scheduler.start()
        try:
            yield
        finally:
            hub_scheduler.stop()
            if background and services.delivery is not None:
                services.delivery.stop()
            projector.stop()
            ingestor.stop()
            if owns_ledger:
                ledger.close()
            engine.dispose()

    app = FastAPI(
        title="LedgerHub",
        version="0.1.0",
        description="Pay-per-use billing on a permissioned ledger. Errors are RFC 9457 problem+json "
        "with a stable `code`.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)  # the one mapping of errors to problem+json (hub/api/errors.py)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(StrictJsonMiddleware)  # inside the body limit: reads bounded bodies only
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.state.rate_limit = install_rate_limit(app, settings)  # refused before the body is read
    app.state.auth_failure_limit = install_failed_auth_limit(app, settings)  # outermost
    app.openapi_schema = None
    _document_problem(app)
    return app


def _document_problem(app: FastAPI) -> None:
    """Make sure `Problem` is in the schema components even if no route names it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("Problem", Problem.model_json_schema())
        for model in (UsageMessage, Reading):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            model_schema.pop("$defs", None)  # nested models are components of their own
            components.setdefault(model.__name__, model_schema)
        _problem_everywhere(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# every route can answer these (auth, body limit, strict JSON, schema, rate limit): documented as problems
COMMON_PROBLEMS = {"400": "Malformed JSON or a refused request", "401": "Missing, invalid or expired token",
                   "403": "The caller's role may not do this", "413": "Body larger than the configured limit",
                   "422": "Request does not match the schema",
                   "429": "Rate limited, or too many failed logins from this address (Retry-After)",
                   "503": "Ledger unavailable, or this hub lacks the area; safe to retry"}


def _problem_everywhere(schema: dict[str, Any]) -> None:
    """The app answers every error as problem+json; FastAPI documents its own 422 as application/json
    (HTTPValidationError). Say what is really sent, so clients and schema checks (schemathesis) agree."""
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        if path in ("/healthz", "/readyz", "/metrics"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            common = dict(COMMON_PROBLEMS, **({"404": "Unknown id, or not visible to the caller"}
                                              if "{" in path else {}))
            for status, description in common.items():
                if status == "422" or status not in responses:
                    responses[status] = {"description": description, "content": content}
