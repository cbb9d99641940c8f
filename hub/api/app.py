"""The app factory: one FastAPI app wired to one ledger, one database and the hub's background workers.

`create_app(settings, ledger)` is all a test, the CLI or an ASGI server needs. Background work (the usage
batcher, the event projector, the scheduler) starts and stops with the app's lifespan, so a TestClient used
as a context manager, or uvicorn, runs the whole hub in-process.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.deps import Services
from hub.api.limits import StrictJsonMiddleware, install_failed_auth_limit, install_rate_limit
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError, Problem
from hub.config import Settings
from hub.delivery.lifecycle import LifecycleEvents
from hub.ingest import Ingestor, Reading, UsageMessage
from hub.ingest_capacity import Capacity
from hub.ledger.base import (
    ChaincodeRejected,
    CommitStatusUnknown,
    EndorsementFailed,
    LedgerError,
    LedgerUnavailable,
    TransactionInvalid,
)
from hub.scheduler import Clock, HubScheduler, Lease, PeriodCloser, utcnow
from hub.services import LedgerGateway, Metrics, chaincode_problem
from hub.store.projector import Projector
from hub.store.session import make_engine, make_sessionmaker, migrate
from hub.store.usage_days import UsageDays

log = logging.getLogger("ledgerhub.api")

CORE_ROUTERS = ("health", "assets", "contracts", "usage", "periods", "invoices", "amendments")
OPTIONAL_ROUTERS = (
    "hub.api.routers.bookings",
    "hub.api.routers.keys",
    "hub.api.routers.deliveries",
    "hub.api.routers.audit",
    "hub.portal.router",
    "hub.bank.router",
    "hub.bank.mandate_router",
    "hub.api.routers.webhooks",
)


def problem_response(error: ApiError, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    retry_after = error.extra.get("retry_after") if error.status == 503 else None
    if retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    return JSONResponse(error.body(instance), status_code=error.status, media_type=PROBLEM_MEDIA_TYPE,
                        headers=headers)


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
    """Org signers from the key area (HSM or persisted software keys); throwaway in-memory keys only when
    that area is absent from the build (then the ledger cannot be reopened with the same identities)."""
    try:
        from hub.keys import build_signers
    except ImportError:
        build_signers = None
    if build_signers is not None:
        return build_signers(settings)
    from hub.keys.signer import SoftwareSigner

    log.warning("hub.keys.build_signers unavailable: using throwaway software keys")
    orgs = (settings.provider_org, settings.customer_org, settings.auditor_org)
    return {org: SoftwareSigner() for org in orgs}


def pipeline_depth(settings: Settings) -> int:
    """Usage transactions in flight at once: the setting, else the ledger's default (ADR 0039)."""
    from hub.ingest_pipeline import PIPELINE_DEPTH_DEFAULT

    return settings.ingest_pipeline_depth or PIPELINE_DEPTH_DEFAULT.get(settings.ledger, 1)


def _open_default_ledger(settings: Settings) -> Any:
    """The ledger the settings name: the embedded one by default, Fabric through its gateway."""
    from hub.ledger import open_ledger

    return open_ledger(settings, default_signers(settings))


AREAS = ("keys", "delivery")


def wire_areas(services: Services, areas: tuple[str, ...]) -> list[str]:
    """Put other areas' services on `Services` when their code is in the build: the key manager
    (`/v1/keys`) and the ERP delivery engine (`/v1/deliveries`, event consumer, reconciliation job). An area
    that fails to wire is logged and left out; the core API keeps working without it."""
    wired = []
    for area in areas:
        try:
            if area == "keys":
                from hub.keys import build_key_manager

                services.keys = build_key_manager(services.settings)
            elif area == "delivery":
                from hub.delivery.service import install

                install(services, start=False)  # started with the app's lifespan
            else:
                raise ValueError(f"unknown area {area!r}")
        except ImportError:
            continue
        except Exception:
            log.exception("could not wire area %s; continuing without it", area)
            continue
        wired.append(area)
    return wired


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(ApiError(400, "malformed_json", "Malformed JSON",
                                             "the body is not valid JSON"), request)
        return problem_response(ApiError(422, "invalid_request", "Invalid request",
                                         "the request does not match the schema", errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return problem_response(ApiError(exc.status_code, code, str(exc.detail)), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(ApiError(500, "internal_error", "Internal error"), request)

    @app.exception_handler(ChaincodeRejected)
    async def _rejected(request: Request, exc: ChaincodeRejected) -> JSONResponse:
        return problem_response(chaincode_problem(exc.error), request)

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        retry_after = request.app.state.services.settings.ingest_retry_after_seconds  # ADR 0038
        if isinstance(exc, LedgerUnavailable):
            error = ApiError(503, "ledger_unavailable", "Ledger unavailable", str(exc),
                             retry_after=retry_after)
        elif isinstance(exc, TransactionInvalid):
            error = ApiError(503, "ledger_conflict", "Ledger conflict, retry", str(exc))
        elif isinstance(exc, CommitStatusUnknown):
            error = ApiError(503, "commit_status_unknown", "Commit status unknown", str(exc), tx_id=exc.tx_id,
                             retry_after=retry_after)
        elif isinstance(exc, EndorsementFailed):
            error = ApiError(503, "endorsement_failed", "Endorsement failed", str(exc))
        else:
            error = ApiError(503, "ledger_unavailable", "Ledger error", str(exc))
        return problem_response(error, request)


def _include_routers(app: FastAPI) -> list[str]:
    included = []
    for name in CORE_ROUTERS:
        module = importlib.import_module(f"hub.api.routers.{name}")
        app.include_router(module.router)
        included.append(module.__name__)
    for dotted in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name and dotted.startswith(exc.name):
                continue  # that area has not landed (yet)
            raise
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)
            included.append(dotted)
    return included


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
                        capacity=Capacity.from_settings(settings),
                        pipeline_depth=pipeline_depth(settings))
    projector = Projector(gateway, db, metrics)
    usage_days = UsageDays(gateway, db)  # daily aggregates for the portal's charts (ADR 0044)
    projector.followers.append(usage_days)
    lifecycle = LifecycleEvents(gateway, db)  # lifecycle webhooks from the event stream (ADR 0053)
    projector.followers.append(lifecycle)
    closer = PeriodCloser(gateway, db, projector, metrics, grace_seconds=settings.close_grace_seconds,
                          clock=clock)
    services = Services(settings=settings, ledger=ledger, db=db)
    services.extras.update(engine=engine, metrics=metrics, gateway=gateway, ingestor=ingestor,
                           projector=projector, closer=closer, clock=clock, usage_days=usage_days,
                           lifecycle=lifecycle)
    run_scheduler = settings.scheduler_enabled if scheduler is None else scheduler
    hub_scheduler = HubScheduler(services, closer, Lease(db, HubScheduler.default_holder(), clock=clock))
    services.extras["scheduler"] = hub_scheduler
    services.extras["areas"] = wire_areas(services, AREAS if areas is None and owns_ledger else areas or ())
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
    _install_handlers(app)
    app.state.routers = _include_routers(app)
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
