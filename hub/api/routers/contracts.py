"""Contracts: the provider proposes, the customer accepts (both orgs endorse on the ledger)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import GatewayDep, Principal, ProjectorDep, ServicesDep, require_roles
from hub.api.problems import problem_responses
from hub.billing.contracts import list_contracts as visible_contracts
from hub.billing.contracts import propose_contract

router = APIRouter(prefix="/v1/contracts", tags=["contracts"],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503))


class ContractIn(BaseModel):
    """A contract and its plan (API.md). The plan itself is validated by the chaincode (`invalid_plan`),
    so the rules live in one place; extra plan fields pass through untouched."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    provider: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    assets: list[str] = Field(min_length=1)
    currency: str = Field(min_length=3, max_length=3)
    timezone: str = Field(min_length=1)
    start: str
    end: str | None = None
    metrics: dict[str, Any]
    charges: list[dict[str, Any]] = Field(min_length=1)


@router.post("", status_code=201, summary="Propose a contract (provider) -> PROPOSED")
def propose(
    contract: ContractIn,
    gw: GatewayDep,
    projector: ProjectorDep,
    principal: Principal = Depends(require_roles("provider")),
) -> JSONResponse:
    record = propose_contract(gw, projector, contract.model_dump(), principal)
    return JSONResponse(record, status_code=201)


@router.post("/{contract_id}/accept", summary="Accept a contract (customer) -> ACTIVE")
def accept(
    contract_id: str,
    gw: GatewayDep,
    projector: ProjectorDep,
    principal: Principal = Depends(require_roles("customer")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)  # 404 unless this customer's contract
    gw.client.accept_contract(contract_id, as_org=principal.org)
    record = gw.contract(contract_id, principal)
    projector.write_contract(record)
    return record


@router.get("/{contract_id}", summary="A contract and its status (parties, auditors)")
def get_contract(
    contract_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    return gw.contract(contract_id, principal)


@router.get("", summary="Contracts visible to the caller (from the read model)")
def list_contracts(
    services: ServicesDep,
    status: str | None = Query(default=None, description="PROPOSED, ACTIVE, ENDED"),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    return {"items": visible_contracts(services.db, principal, status=status)}
