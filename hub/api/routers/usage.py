"""Usage: devices post signed messages; parties and auditors read aggregates, cost to date and forecast."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from hub.api.deps import GatewayDep, IngestorDep, NowDep, Principal, require_roles
from hub.api.errors import problem_headers
from hub.api.problems import PROBLEM_MEDIA_TYPE, problem_responses
from hub.api.routers._common import json_body
from hub.billing.usage import usage_report

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
    ingestor: IngestorDep,
    wait: bool = Query(default=True, description="wait for the ledger commit"),
    principal: Principal = Depends(require_roles("device")),
) -> JSONResponse:
    raw = await json_body(request)
    # ingestion's own bounded threads and waits (hub/ingest_capacity.py), never the shared threadpool; its
    # answer is the one it records (a refusal's problem document, replayed as it was)
    status, body = await ingestor.handle(raw, principal, wait=wait)
    media = PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
    return JSONResponse(body, status_code=status, media_type=media,
                        headers=problem_headers(status, body) if status >= 400 else None)


@router.get("/v1/contracts/{contract_id}/usage",
            summary="Usage, cost to date and forecast (parties, auditors)")
def get_usage(
    contract_id: str,
    gw: GatewayDep,
    now: NowDep,
    period: str | None = Query(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM"),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)
    return usage_report(gw.client, contract, period, principal.org, now)
