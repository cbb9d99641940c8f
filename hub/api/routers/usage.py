"""Usage: devices post signed messages; parties and auditors read aggregates, cost to date and forecast."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError, problem_responses
from hub.api.routers._common import gateway, ingestor, json_body
from hub.ledger.base import ChaincodeRejected
from hub.scheduler import next_month

router = APIRouter(tags=["usage"], responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))

ACCEPTED_EXAMPLE = {"accepted": 2, "duplicates": [], "tx_id": "9f2c...", "block": 42}


@router.post(
    "/v1/usage",
    status_code=202,
    summary="Post one signed usage message (device)",
    description="Committed answer `{accepted, duplicates, tx_id, block}`; with `wait=false`, "
    "`{status: queued, message_id}`. A replayed `message_id` returns the first answer. A reading is "
    "(device_id, reading id): one already recorded with the same content is listed in `duplicates` "
    "(only duplicates: 409 `duplicate_reading`); the same id with other content rejects the message "
    "with 409 `reading_conflict` naming it. When ingestion is saturated: `503 ingest_saturated` with "
    "`Retry-After` (nothing recorded; send it again).",
    # the body is read raw (the signature covers the bytes as sent); its schema is a component (app.py)
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/UsageMessage"}}}}},
    responses={202: {"description": "Accepted",
                     "content": {"application/json": {"example": ACCEPTED_EXAMPLE}}}},
)
async def post_usage(
    request: Request,
    wait: bool = Query(default=True, description="wait for the ledger commit"),
    principal: Principal = Depends(require_roles("device")),
    services: Services = Depends(get_services),
) -> JSONResponse:
    raw = await json_body(request)
    # ingestion's own bounded threads and waits (hub/ingest_capacity.py), never the shared threadpool
    status, body = await ingestor(services).handle(raw, principal, wait=wait)
    media = PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
    headers = {"Retry-After": str(body["retry_after"])} if status == 503 and "retry_after" in body else None
    return JSONResponse(body, status_code=status, media_type=media, headers=headers)


def current_period(timezone: str, now: dt.datetime) -> str:
    local = now.astimezone(ZoneInfo(timezone))
    return f"{local.year:04d}-{local.month:02d}"


FIXED_MODELS = {"flat"}
ADJUSTMENT_MODELS = {"minimum_commitment", "maximum_cap", "maximum"}


def forecast(usage: dict[str, Any], contract: dict[str, Any], period: str,
             now: dt.datetime) -> dict[str, Any] | None:
    """Run-rate forecast of the running period: usage lines scaled by elapsed time, flat lines as they are,
    then the minimum commitment and tax as the plan states them. Approximate by nature (tiered prices make
    the true curve non-linear), and labelled as such; a closed or future period has no forecast."""
    tz = ZoneInfo(contract.get("timezone") or "UTC")
    year, month = int(period[:4]), int(period[5:7])
    start = dt.datetime(year, month, 1, tzinfo=tz)
    ny, nm = next_month(year, month)
    end = dt.datetime(ny, nm, 1, tzinfo=tz)
    cost = usage.get("cost") or {}
    if not start <= now < end or not cost.get("lines"):
        return None
    try:
        exponent = -Decimal(str(cost.get("total", "0"))).as_tuple().exponent  # the currency's minor units
        quantum = Decimal(1).scaleb(-int(exponent))
        elapsed = Decimal((now - start).total_seconds())
        scale = Decimal((end - start).total_seconds()) / elapsed
        fixed = sum((Decimal(line["amount"]) for line in cost["lines"] if line.get("model") in FIXED_MODELS),
                    Decimal(0))
        variable = sum((Decimal(line["amount"]) for line in cost["lines"]
                        if line.get("model") not in FIXED_MODELS | ADJUSTMENT_MODELS), Decimal(0))
        subtotal = (fixed + variable * scale).quantize(quantum, rounding=ROUND_HALF_UP)
        minimum = contract.get("minimum_commitment")
        if minimum is not None and subtotal < Decimal(str(minimum)):
            subtotal = Decimal(str(minimum)).quantize(quantum, rounding=ROUND_HALF_UP)
        rate = Decimal(str((contract.get("tax") or {}).get("rate", "0")))
        tax = (subtotal * rate).quantize(quantum, rounding=ROUND_HALF_UP)
    except (InvalidOperation, KeyError, ZeroDivisionError, TypeError):
        return None
    return {"method": "linear_run_rate", "subtotal": str(subtotal), "tax": str(tax),
            "total": str(subtotal + tax), "elapsed_fraction": str((1 / scale).quantize(Decimal("0.0001"))),
            "metrics": metric_forecast(usage, contract, scale)}


def metric_forecast(usage: dict[str, Any], contract: dict[str, Any], scale: Decimal) -> dict[str, str]:
    """Each metric's quantity at period end at today's rate: sums and counts scale with elapsed time; a
    maximum or a latest value is forecast as it stands (to two decimals, as the forecast is an estimate)."""
    out: dict[str, str] = {}
    stats = (usage.get("aggregate") or {}).get("metrics") or {}
    for metric, definition in (contract.get("metrics") or {}).items():
        aggregation = (definition or {}).get("aggregation", "sum")
        s = stats.get(metric)
        if s is None:
            value = Decimal(0)
        elif aggregation == "sum":
            value = Decimal(str(s["sum"])) * scale
        elif aggregation == "count":
            value = Decimal(int(s["count"])) * scale
        elif aggregation == "max":
            value = Decimal(str(s["max"]))
        else:  # latest
            value = Decimal(str(s["latest"][2]))
        # an estimate: two decimals say all it knows
        out[metric] = format(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")
    return out


@router.get("/v1/contracts/{contract_id}/usage",
            summary="Usage, cost to date and forecast (parties, auditors)")
def get_usage(
    contract_id: str,
    period: str | None = Query(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM"),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    gw = gateway(services)
    contract = gw.contract(contract_id, principal)
    now: dt.datetime = services.extras["clock"]()
    period = period or current_period(contract.get("timezone", "UTC"), now)
    usage = gw.evaluate("GetUsage", {"contract_id": contract_id, "period": period}, as_org=principal.org)
    if not isinstance(usage, dict):
        raise ApiError(502, "unexpected_ledger_answer", "Unexpected answer from the ledger")
    answer = {**usage, "contract_id": contract_id, "period": period,
              "forecast": forecast(usage, contract, period, now)}
    if (prepaid := prepaid_view(gw, contract_id, {**usage, "period": period}, principal.org)) is not None:
        answer["prepaid"] = prepaid
    if (billing := billing_view(gw, contract, period, principal.org)) is not None:
        answer["billing"] = billing
    return answer


def prepaid_view(gw: Any, contract_id: str, usage: dict[str, Any], org: str) -> dict[str, str] | None:
    """A funded contract's balance against the cost to date (ADR 0043, 0051): every committed batch draws
    the balance down in real time, so `drawn` is what this period has taken so far and `undrawn` what its
    cost to date is still owed beyond that (when the balance ran out); `available` = balance - undrawn, never
    below zero. None for contracts never funded."""
    try:
        record = gw.evaluate("GetPrepaid", {"contract_id": contract_id}, as_org=org)
        running = gw.evaluate("GetRunning", {"contract_id": contract_id, "period": usage["period"]},
                              as_org=org)
    except ChaincodeRejected:
        return None
    if not isinstance(record, dict) or not record.get("movements"):
        return None
    balance = Decimal(str(record["balance"]))
    cost = Decimal(str((usage.get("cost") or {}).get("total") or "0"))
    run = (running or {}).get("running") or {}
    drawn = Decimal(str(run.get("drawn") or "0"))
    undrawn = max(cost - drawn, Decimal(0)) if not run.get("closed_by") else Decimal(0)
    out = {"balance": record["balance"], "cost_to_date": str(cost), "drawn": str(drawn),
           "undrawn": str(undrawn), "available": str(max(balance - undrawn, Decimal(0))),
           "covers_cost_to_date": str(balance >= undrawn).lower()}
    if record.get("low"):
        out["low_balance"] = "true"
    return out


def billing_view(gw: Any, contract: dict[str, Any], period: str, org: str) -> dict[str, Any] | None:
    """Progressive billing (ADR 0051): the threshold, what interim invoices billed this period so far, and
    what the cost to date holds beyond that. None for contracts without a billing threshold."""
    if contract.get("billing_threshold") is None:
        return None
    view = gw.evaluate("GetRunning", {"contract_id": contract["id"], "period": period}, as_org=org)
    run = view.get("running") or {}
    billed = run.get("billed") or {}
    return {"threshold": view.get("billing_threshold"), "billed": billed.get("total", "0"),
            "unbilled": view.get("unbilled", "0"), "interim_invoices": run.get("interims", [])}
