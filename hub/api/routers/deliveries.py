"""ERP deliveries: where each invoice stands in each target ERP, and the operator's retry of a dead letter.

Visibility: a provider or customer sees the deliveries into its own org's ERP; an operator sees all.
Auditors are not listed in API.md for this resource and get 403.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


def _engine(services: Services) -> Any:
    if services.delivery is None:
        raise ApiError(503, "delivery_not_configured", "ERP delivery is not configured on this hub")
    return services.delivery


@router.get("", summary="ERP delivery state per target")
def list_deliveries(
    invoice: str | None = Query(default=None, max_length=250, description="invoice id"),
    limit: int = Query(default=500, ge=1, le=5000, description="at most this many, by invoice id"),
    principal: Principal = Depends(require_roles("provider", "customer", "operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    org = None if principal.role == "operator" else principal.org
    return {"items": _engine(services).list(invoice_id=invoice, org=org, limit=limit)}


@router.get("/{delivery_id}", summary="One delivery with its attempt history")
def get_delivery(
    delivery_id: str,
    principal: Principal = Depends(require_roles("provider", "customer", "operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    found = _engine(services).get(delivery_id)
    if found is None or (principal.role != "operator" and found["org"] != principal.org):
        raise ApiError(404, "delivery_not_found", "Delivery not found", f"no delivery {delivery_id!r}")
    return found


@router.post("/{delivery_id}/retry", status_code=202, summary="Retry a dead-lettered delivery")
def retry_delivery(
    delivery_id: str,
    principal: Principal = Depends(require_roles("operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    engine = _engine(services)
    found = engine.get(delivery_id)
    if found is None:
        raise ApiError(404, "delivery_not_found", "Delivery not found", f"no delivery {delivery_id!r}")
    requeued = engine.retry(delivery_id)
    if requeued is None:
        raise ApiError(409, "delivery_not_dead_lettered", "Only a dead-lettered delivery can be retried",
                       f"delivery {delivery_id!r} is {found['state']}", state=found["state"])
    return requeued
