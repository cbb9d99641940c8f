"""ERP deliveries: where each invoice stands in each target ERP, and the operator's retry of a dead letter.

Visibility (ADR 0029): every caller, operators included, sees and retries only the deliveries its own org
owns: an ERP delivery belongs to the org whose ERP it posts into (the SAP receivable to the provider, the
Oracle payable or the UBL e-invoice to the customer), a webhook delivery to the org that registered the
webhook. Another org's delivery is answered `404 delivery_not_found`, exactly like an unknown id. Only an
operator token configured with `"scope": "platform"` sees every org's. Auditors are not listed in API.md
for this resource and get 403.
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


def _visible(engine: Any, delivery_id: str, principal: Principal) -> dict[str, Any]:
    """The delivery if the caller's org owns it; unknown and another org's are the same 404."""
    found = engine.get(delivery_id)
    if found is None or not principal.owns(found["org"]):
        raise ApiError(404, "delivery_not_found", "Delivery not found", f"no delivery {delivery_id!r}")
    return found


@router.get("", summary="ERP delivery state per target")
def list_deliveries(
    invoice: str | None = Query(default=None, max_length=250, description="invoice id"),
    limit: int = Query(default=500, ge=1, le=5000, description="at most this many, by invoice id"),
    principal: Principal = Depends(require_roles("provider", "customer", "operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    return {"items": _engine(services).list(invoice_id=invoice, org=principal.org_filter(), limit=limit)}


@router.get("/{delivery_id}", summary="One delivery with its attempt history")
def get_delivery(
    delivery_id: str,
    principal: Principal = Depends(require_roles("provider", "customer", "operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    return _visible(_engine(services), delivery_id, principal)


@router.post("/{delivery_id}/retry", status_code=202, summary="Retry a dead-lettered delivery")
def retry_delivery(
    delivery_id: str,
    principal: Principal = Depends(require_roles("operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    engine = _engine(services)
    found = _visible(engine, delivery_id, principal)
    requeued = engine.retry(delivery_id)
    if requeued is None:
        raise ApiError(409, "delivery_not_dead_lettered", "Only a dead-lettered delivery can be retried",
                       f"delivery {delivery_id!r} is {found['state']}", state=found["state"])
    return requeued
