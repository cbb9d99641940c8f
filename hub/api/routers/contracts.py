"""Contracts: the provider proposes, the customer accepts (both orgs endorse on the ledger)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.api.routers._common import gateway, projector
from hub.store.models import ContractView

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
    principal: Principal = Depends(require_roles("provider")),
    services: Services = Depends(get_services),
) -> JSONResponse:
    if contract.provider != principal.org:
        raise ApiError(403, "forbidden", "Not the provider",
                       "a provider proposes contracts for its own org only")
    gw = gateway(services)
    gw.submit("ProposeContract", contract.model_dump(), as_org=principal.org)
    record = gw.contract(contract.id, principal)
    projector(services).write_contract(record)
    return JSONResponse(record, status_code=201)


@router.post("/{contract_id}/accept", summary="Accept a contract (customer) -> ACTIVE")
def accept(
    contract_id: str,
    principal: Principal = Depends(require_roles("customer")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    gw = gateway(services)
    gw.contract(contract_id, principal)  # 404 unless this customer's contract
    gw.submit("AcceptContract", {"contract_id": contract_id}, as_org=principal.org)
    record = gw.contract(contract_id, principal)
    projector(services).write_contract(record)
    return record


@router.get("/{contract_id}", summary="A contract and its status (parties, auditors)")
def get_contract(
    contract_id: str,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    return gateway(services).contract(contract_id, principal)


@router.get("", summary="Contracts visible to the caller (from the read model)")
def list_contracts(
    status: str | None = Query(default=None, description="PROPOSED, ACTIVE, ENDED"),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    query = select(ContractView).order_by(ContractView.id)
    if principal.role == "provider":
        query = query.where(ContractView.provider == principal.org)
    elif principal.role == "customer":
        query = query.where(ContractView.customer == principal.org)
    elif not principal.is_auditor:
        org = principal.org
        query = query.where(or_(ContractView.provider == org, ContractView.customer == org))
    if status:
        query = query.where(ContractView.status == status)
    with services.db() as session:
        rows = session.scalars(query).all()
    return {"items": [
        {"id": r.id, "provider": r.provider, "customer": r.customer, "status": r.status,
         "currency": r.currency, "timezone": r.timezone, "start": r.start, "end": r.end} for r in rows
    ]}
