"""Closing a billing period by hand (operators); normally the scheduler does it after the grace time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from hub.api.deps import GatewayDep, MetricsDep, Principal, ProjectorDep, require_roles
from hub.api.problems import problem_responses
from hub.scheduler import close_period

router = APIRouter(tags=["periods"], responses=problem_responses(400, 401, 403, 404, 409, 503))


@router.post("/v1/contracts/{contract_id}/periods/{period}/close",
             summary="Close a period now (operator) -> the invoice; closing again returns the same invoice")
def close(
    contract_id: str,
    gw: GatewayDep,
    projector: ProjectorDep,
    metrics: MetricsDep,
    period: str = Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM"),
    principal: Principal = Depends(require_roles("operator")),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)  # 404 unless the operator's org is a party
    as_org = principal.org if principal.org == contract["customer"] else contract["provider"]
    invoice = close_period(gw, projector, contract_id, period, as_org)
    metrics.invoices_closed.labels("api").inc()
    return invoice
