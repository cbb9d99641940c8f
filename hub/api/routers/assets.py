"""Assets: a provider registers a device with its public key; the registering org owns it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.api.routers._common import gateway
from hub.ledger.base import ChaincodeRejected

router = APIRouter(prefix="/v1/assets", tags=["assets"],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))


class AssetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    description: str = Field(default="", max_length=1000)
    public_key: str = Field(min_length=1, max_length=4000, description="P-256 SubjectPublicKeyInfo PEM")
    shared: bool = Field(default=False, description="in several contracts at once, its readings routed by "
                         "bookings (POST /v1/assets/{id}/bookings, ADR 0049)")


@router.post("", status_code=201, summary="Register an asset (provider)")
def register_asset(
    asset: AssetIn,
    principal: Principal = Depends(require_roles("provider")),
    services: Services = Depends(get_services),
) -> JSONResponse:
    gw = gateway(services)
    gw.submit("RegisterAsset", asset.model_dump(exclude_defaults=True), as_org=principal.org)
    record = gw.evaluate("GetAsset", {"id": asset.id}, as_org=principal.org)
    return JSONResponse(record, status_code=201)


@router.get("/{asset_id}", summary="An asset (its provider, auditors)")
def get_asset(
    asset_id: str,
    principal: Principal = Depends(require_roles("provider", "auditor")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    unknown = ApiError(404, "unknown_asset", "Unknown asset", f"no asset {asset_id!r} visible to this caller")
    try:
        record = gateway(services).evaluate("GetAsset", {"id": asset_id}, as_org=principal.org)
    except ChaincodeRejected as exc:
        if exc.code in {"unknown_asset", "forbidden"}:
            raise unknown from None
        raise
    if not principal.is_auditor and record.get("provider") != principal.org:
        raise unknown
    return record
