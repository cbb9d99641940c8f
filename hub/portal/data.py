"""The series endpoints behind the portal's charts, served from the daily aggregates (ADR 0044).

Each answer carries an `ETag` (a digest of the body) and a `version` (the last block that changed the
period's usage); a poller that sends `If-None-Match` gets `304 Not Modified` with no body while nothing
changed, and the daily series with `since=<version>` returns only the days changed after that version, so
a page that stays open never downloads the whole period again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from chaincode.periods import zone
from chaincode.plan import parse_plan
from hub.api.deps import GatewayDep, Principal, Services, ServicesDep, require_roles
from hub.api.problems import problem_responses
from hub.billing.forecast import current_period, forecast
from hub.portal import charts
from hub.portal.wiring import alert_service, usage_days
from hub.store.models import InvoiceView, UsageDay

PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
READERS = ("provider", "customer", "auditor")
HISTORY = 12

router = APIRouter(tags=["usage"], responses=problem_responses(400, 401, 403, 404, 422))


def clock(services: Services) -> dt.datetime:
    return services.now()


def conditional(request: Request, body: dict[str, Any]) -> Response:
    """The body as JSON with a strong ETag, or 304 when the caller already has exactly this body."""
    raw = orjson.dumps(body)
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    asked = {t.strip() for t in request.headers.get("if-none-match", "").split(",")}
    if etag in asked or f"W/{etag}" in asked:
        return Response(status_code=304, headers=headers)
    return Response(raw, media_type="application/json", headers=headers)


def _period_rows(services: Services, contract_id: str, period: str,
                 since: int | None = None) -> tuple[list[UsageDay], int]:
    days = usage_days(services)
    days.fresh()
    rows = days.rows(contract_id, period)
    version = max((r.block for r in rows), default=0)
    if since is not None:
        rows = [r for r in rows if r.block > since]
    return rows, version


def _today(contract: dict[str, Any], period: str, now: dt.datetime) -> dt.date | None:
    """Today in the contract's zone while `period` runs; None for a period already over (all days count);
    a future period has no today either (and no readings)."""
    local = now.astimezone(zone(contract.get("timezone") or "UTC"))
    return local.date() if current_period(contract.get("timezone", "UTC"), now) == period else None


@router.get("/v1/contracts/{contract_id}/usage/series",
            summary="Daily usage per metric in the contract's local days (parties, auditors)",
            description="From the daily aggregates. `since=<version>`: only the days changed after that "
            "version (`partial: true`). `If-None-Match` with the last ETag: 304 while nothing changed.")
def usage_series(
    request: Request,
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    period: str | None = Query(default=None, pattern=PERIOD, description="YYYY-MM"),
    since: int | None = Query(default=None, ge=0, description="a version from an earlier answer"),
    principal: Principal = Depends(require_roles(*READERS)),
) -> Response:
    contract = gw.contract(contract_id, principal)
    timezone = contract.get("timezone", "UTC")
    period = period or current_period(timezone, clock(services))
    all_rows, version = _period_rows(services, contract_id, period)
    series = charts.daily(charts.merged_days(all_rows), contract.get("metrics") or {}, period)
    body: dict[str, Any] = {"contract_id": contract_id, "period": period, "timezone": timezone,
                            "version": version, **series}
    if since is not None:
        changed = sorted({r.day for r in all_rows if r.block > since})
        index = {d: i for i, d in enumerate(series["days"])}
        body.update(partial=True, days=changed, metrics={
            m: {**data, "values": [data["values"][index[d]] for d in changed]}
            for m, data in series["metrics"].items()
        })
    return conditional(request, body)


@router.get("/v1/contracts/{contract_id}/usage/cost-series",
            summary="Cumulative cost per day against the caller's budget, with the forecast band")
def cost_series(
    request: Request,
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    period: str | None = Query(default=None, pattern=PERIOD, description="YYYY-MM"),
    principal: Principal = Depends(require_roles(*READERS)),
) -> Response:
    contract = gw.contract(contract_id, principal)
    now = clock(services)
    period = period or current_period(contract.get("timezone", "UTC"), now)
    rows, version = _period_rows(services, contract_id, period)
    plan = parse_plan(contract)
    days = charts.merged_days(rows)
    labels = [d.isoformat() for d in charts.period_days(period)]
    cumulative = charts.cumulative_cost(plan, days, period, _today(contract, period, now))
    merged = charts.rating.merge(days.values())
    rated = charts.rating.rate(plan, merged).to_json()
    predicted = forecast({"cost": rated, "aggregate": merged.to_json()}, contract, period, now)
    budget = None
    if principal.role in ("provider", "customer"):
        budget = alert_service(services).get_rule(contract_id, principal.org).get("budget")
    body = {
        "contract_id": contract_id, "period": period, "currency": contract.get("currency"),
        "version": version, "days": labels, "cumulative": cumulative, "cost_to_date": rated["total"],
        "budget": budget, "budget_crossed_on": charts.budget_crossing(cumulative, budget, labels),
        "forecast_total": predicted["total"] if predicted else None,
        "forecast": charts.forecast_band(cumulative, predicted["total"] if predicted else None),
    }
    return conditional(request, body)


@router.get("/v1/contracts/{contract_id}/usage/assets",
            summary="Each asset's share of the period's usage per metric (parties, auditors)")
def asset_breakdown(
    request: Request,
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    period: str | None = Query(default=None, pattern=PERIOD, description="YYYY-MM"),
    principal: Principal = Depends(require_roles(*READERS)),
) -> Response:
    contract = gw.contract(contract_id, principal)
    period = period or current_period(contract.get("timezone", "UTC"), clock(services))
    rows, version = _period_rows(services, contract_id, period)
    metrics = contract.get("metrics") or {}
    body = {"contract_id": contract_id, "period": period, "version": version,
            "units": {m: (d or {}).get("unit", "") for m, d in metrics.items()},
            "assets": charts.per_asset(rows, metrics), "contract_assets": contract.get("assets") or []}
    return conditional(request, body)


@router.get("/v1/contracts/{contract_id}/invoice-history",
            summary="The last twelve periods' invoice totals (parties, auditors)")
def invoice_history(
    request: Request,
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles(*READERS)),
) -> Response:
    contract = gw.contract(contract_id, principal)
    query = (select(InvoiceView).where(InvoiceView.contract_id == contract_id, InvoiceView.type == "invoice")
             .order_by(InvoiceView.period.desc()).limit(HISTORY))
    with services.db() as session:
        rows = list(session.scalars(query))
    items = [{"id": r.id, "period": r.period, "total": r.total, "status": r.status} for r in reversed(rows)]
    return conditional(request, {"contract_id": contract_id, "currency": contract.get("currency"),
                                 "items": items})
