"""The portal's page and the small API it reads beyond the core resources: daily usage for charts, alert
rules and alerts. The page is static HTML and plain JavaScript served from this package (no build step);
it signs in with a bearer token kept in the browser's session storage and calls the same REST API as
everyone else, so it can see exactly what its token may see and nothing more.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.api.routers._common import gateway
from hub.api.routers.usage import current_period, forecast
from hub.delivery.egress import FORBIDDEN_CODE, EgressPolicy, EgressRefused, check_url, system_resolver
from hub.portal.alerts import AlertService
from hub.scheduler import register_job

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# third-party browser code, installed from the npm registry at the versions package-lock.json pins
# (`make portal-assets`), served by the hub itself: no CDN (ADR 0044)
ASSETS = Path(__file__).resolve().parent / "assets" / "node_modules"
VENDOR = {"chart.umd.min.js": ASSETS / "chart.js" / "dist" / "chart.umd.min.js"}
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
DECIMAL = r"^\d{1,15}(\.\d{1,6})?$"
PARTIES = ("provider", "customer")

router = APIRouter(responses=problem_responses(400, 401, 403, 404, 422))


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    secret: str = Field(min_length=16, max_length=200)


class AlertRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field must not silently reset the rule

    budget: str | None = Field(default=None, pattern=DECIMAL, description="period total incl. tax")
    usual_level: str | None = Field(default=None, pattern=DECIMAL, description="a usual period's total")
    usual_usage: dict[str, Annotated[str, Field(pattern=DECIMAL)]] | None = Field(
        default=None, max_length=50, description="a usual period's use per metric (quantities)"
    )
    webhooks: list[WebhookIn] | None = Field(default=None, max_length=5)


def _clock(services: Services) -> dt.datetime:
    clock = services.extras.get("clock")
    return clock() if clock else dt.datetime.now(dt.UTC)


def usage_with_forecast(services: Services, contract_id: str, org: str) -> dict[str, Any]:
    """The usage endpoint's answer for `org` (cost to date and forecast), for the alert evaluator."""
    gw = gateway(services)
    contract = gw.evaluate("GetContract", {"id": contract_id}, as_org=org)
    now = _clock(services)
    period = current_period(contract.get("timezone", "UTC"), now)
    usage = gw.evaluate("GetUsage", {"contract_id": contract_id, "period": period}, as_org=org)
    return {
        **usage,
        "period": period,
        "currency": contract.get("currency"),
        "forecast": forecast(usage, contract, period, now),
    }


def alert_service(services: Services) -> AlertService:
    service = services.extras.get("alerts")
    if service is None:
        enqueue = services.extras.get("webhook_enqueue")
        if enqueue is None and services.delivery is not None:
            from hub.delivery.webhooks import enqueue_webhook  # alerts ride the ERP delivery engine

            enqueue = enqueue_webhook
        service = AlertService(services.db, lambda cid, org: usage_with_forecast(services, cid, org), enqueue)
        services.extras["alerts"] = service
    return service


def _evaluate_job(services: Services) -> None:
    alert_service(services).evaluate_all()


register_job("evaluate-alerts", _evaluate_job, seconds=30)


# --- the page -----------------------------------------------------------------------------------


@router.get("/portal", response_class=HTMLResponse, include_in_schema=False)
def portal_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/portal/static/{name}", include_in_schema=False)
def portal_static(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file() or path.suffix not in STATIC_TYPES:
        raise ApiError(404, "not_found", "Not found")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix])


@router.get("/portal/vendor/{name}", include_in_schema=False)
def portal_vendor(name: str) -> FileResponse:
    path = VENDOR.get(name)
    if path is None:
        raise ApiError(404, "not_found", "Not found")
    if not path.is_file():
        raise ApiError(503, "portal_assets_missing", "Portal assets are not installed",
                       "the charting library is installed by `make portal-assets` (npm ci in "
                       "hub/portal/assets)")
    return FileResponse(path, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


# --- data for the page ------------------------------------------------------------------------------


@router.get(
    "/v1/contracts/{contract_id}/alert-rules",
    tags=["alerts"],
    summary="The caller's org's budget, usual level and webhooks for a contract",
)
def get_alert_rules(
    contract_id: str,
    principal: Principal = Depends(require_roles(*PARTIES)),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    gateway(services).contract(contract_id, principal)
    return alert_service(services).get_rule(contract_id, principal.org)


@router.put(
    "/v1/contracts/{contract_id}/alert-rules",
    tags=["alerts"],
    summary="Set the caller's org's budget, usual level and webhooks; evaluates at once",
)
def put_alert_rules(
    contract_id: str,
    body: AlertRuleIn,
    principal: Principal = Depends(require_roles(*PARTIES)),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    contract = gateway(services).contract(contract_id, principal)
    unknown = sorted(set(body.usual_usage or {}) - set(contract.get("metrics") or {}))
    if unknown:
        raise ApiError(400, "unknown_metric", "Unknown metric", f"the contract has no metric {unknown[0]!r}",
                       metrics=unknown)
    hooks = (
        None if body.webhooks is None else [{"url": str(h.url), "secret": h.secret} for h in body.webhooks]
    )
    policy = EgressPolicy.from_settings(services.settings)
    resolve = services.extras.get("resolver") or system_resolver
    for hook in hooks or []:
        try:  # checked again, freshly resolved, at every send (hub/delivery/webhooks.py)
            check_url(hook["url"], policy, resolve=resolve, must_resolve=False)
        except EgressRefused as exc:
            raise ApiError(400, FORBIDDEN_CODE, "Webhook URL not allowed",
                           f"{hook['url']!r}: {exc.reason}", url=hook["url"], reason=exc.reason) from None
    service = alert_service(services)
    rule = service.set_rule(
        contract_id, principal.org, budget=body.budget, usual_level=body.usual_level, webhooks=hooks,
        usual_usage=body.usual_usage,
    )
    service.evaluate(contract_id, principal.org)
    return rule


@router.get("/v1/alerts", tags=["alerts"], summary="Alerts raised for the caller's org (auditors: all)")
def list_alerts(
    contract: str | None = Query(default=None, max_length=200),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    if contract is not None:
        gateway(services).contract(contract, principal)
    org = None if principal.role == "auditor" else principal.org
    return {"alerts": alert_service(services).alerts(org=org, contract_id=contract)}


# --- the chart series and the role views (ADR 0044) ---------------------------------------------------

from hub.portal import data, views  # noqa: E402  (they import alert_service from here lazily)

router.include_router(data.router)
router.include_router(views.router)
