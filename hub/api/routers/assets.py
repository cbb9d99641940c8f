"""Assets: a provider registers a device with its public key; the registering org owns it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import GatewayDep, Principal, require_roles
from hub.api.problems import problem_responses

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
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider")),
) -> JSONResponse:
    gw.client.register_asset(asset.model_dump(exclude_defaults=True), as_org=principal.org)
    record = gw.client.get_asset(asset.id, as_org=principal.org)
    return JSONResponse(record.raw, status_code=201)


@router.get("/{asset_id}", summary="An asset (its provider, auditors)")
def get_asset(
    asset_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider", "auditor")),
) -> dict[str, Any]:
    return gw.asset(asset_id, principal)
