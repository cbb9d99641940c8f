"""The portal's page and the small API it reads beyond the core resources: daily usage for charts, alert
rules and alerts. The page is static HTML and plain JavaScript served from this package (no build step);
it signs in with a bearer token kept in the browser's session storage and calls the same REST API as
everyone else, so it can see exactly what its token may see and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from hub.api.deps import GatewayDep, Principal, ServicesDep, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.delivery.egress import FORBIDDEN_CODE, EgressPolicy, EgressRefused, check_url, system_resolver
from hub.errors import InvalidInput
from hub.portal.wiring import alert_service

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
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles(*PARTIES)),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    return alert_service(services).get_rule(contract_id, principal.org)


@router.put(
    "/v1/contracts/{contract_id}/alert-rules",
    tags=["alerts"],
    summary="Set the caller's org's budget, usual level and webhooks; evaluates at once",
)
def put_alert_rules(
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    body: AlertRuleIn,
    principal: Principal = Depends(require_roles(*PARTIES)),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)
    unknown = sorted(set(body.usual_usage or {}) - set(contract.get("metrics") or {}))
    if unknown:
        raise InvalidInput("unknown_metric", "Unknown metric", f"the contract has no metric {unknown[0]!r}",
                           metrics=unknown)
    hooks = (
        None if body.webhooks is None else [{"url": str(h.url), "secret": h.secret} for h in body.webhooks]
    )
    policy = EgressPolicy.from_settings(services.settings)
    resolve = services.resolver or system_resolver
    for hook in hooks or []:
        try:  # checked again, freshly resolved, at every send (hub/delivery/webhooks.py)
            check_url(hook["url"], policy, resolve=resolve, must_resolve=False)
        except EgressRefused as exc:
            raise InvalidInput(FORBIDDEN_CODE, "Webhook URL not allowed",
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
    gw: GatewayDep,
    services: ServicesDep,
    contract: str | None = Query(default=None, max_length=200),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    if contract is not None:
        gw.contract(contract, principal)
    org = None if principal.role == "auditor" else principal.org
    return {"alerts": alert_service(services).alerts(org=org, contract_id=contract)}
