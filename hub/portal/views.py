"""The portal's role views beyond one contract: the provider's book of contracts, the auditor's
verification of invoices, and the customer's CSV export of a period's readings.

Everything goes through the hub's read models and the `Ledger` interface (`LedgerGateway`), never a
ledger's internals, so the views are the same on the embedded ledger and on Fabric.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from chaincode.plan import parse_plan
from hub.api.deps import GatewayDep, Principal, Services, ServicesDep, require_roles
from hub.api.problems import problem_responses
from hub.audit.proof import build_proof_bundle
from hub.audit.verify import verify_bundle
from hub.billing.answers import Invoice
from hub.billing.forecast import current_period, forecast
from hub.billing.visibility import visible_to
from hub.delivery.models import DEAD_LETTER, Delivery
from hub.portal import charts
from hub.portal.models import Alert
from hub.portal.wiring import usage_days
from hub.store.models import ContractView, InvoiceView

PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"

OPEN = ("ISSUED", "POSTED", "PARTIALLY_PAID", "DISPUTED")
DEFAULT_PAYMENT_DAYS = 30  # as the e-invoice's DueDate (connectors/ubl.py), unless the contract says
CSV_FIELDS = ("device_id", "id", "metric", "quantity", "timestamp", "unit_price", "message_id", "tx_id")

router = APIRouter(tags=["portal"], responses=problem_responses(400, 401, 403, 404, 422))


def _due(invoice: Invoice, contract: dict[str, Any]) -> dt.datetime | None:
    issued = next((h.get("timestamp") for h in invoice.history if h.get("status") == "ISSUED"), None)
    if not issued:
        return None
    days = int(contract.get("payment_terms_days") or DEFAULT_PAYMENT_DAYS)
    return dt.datetime.fromisoformat(str(issued).replace("Z", "+00:00")) + dt.timedelta(days=days)


def _money(values: list[str]) -> str:
    return str(sum((Decimal(v) for v in values), Decimal(0)))


@router.get("/v1/portal/me", summary="Who the token acts for: org and role (the page picks its view)")
def whoami(principal: Principal = Depends(require_roles("provider", "customer", "auditor", "operator"))
           ) -> dict[str, Any]:
    return {"org": principal.org, "role": principal.role}


@router.get("/v1/portal/provider", summary="The provider's contracts: usage, revenue, forecast, invoices, "
            "dead-lettered deliveries and alerts (providers)")
def provider_overview(
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("provider")),
) -> dict[str, Any]:
    now = services.now()
    with services.db() as session:
        contracts = list(session.scalars(select(ContractView).where(*visible_to(principal, ContractView))
                                         .order_by(ContractView.id)))
        invoices = list(session.scalars(select(InvoiceView).where(InvoiceView.provider == principal.org,
                                                                 InvoiceView.type == "invoice")))
        counted = select(Alert.contract_id, func.count()).where(Alert.org == principal.org)
        alerts = dict(session.execute(counted.group_by(Alert.contract_id)).all())
    dead = _dead_letters(services, principal.org)
    items = []
    for view in contracts:
        contract = dict(gw.client.get_contract(view.id, as_org=principal.org).raw)
        period = current_period(view.timezone, now)
        days = charts.merged_days(usage_days(services).rows(view.id, period))
        merged = charts.rating.merge(days.values())
        rated = charts.rating.rate(parse_plan(contract), merged).to_json()
        predicted = forecast({"cost": rated, "aggregate": merged.to_json()}, contract, period, now)
        mine = [i for i in invoices if i.contract_id == view.id]
        open_rows = [i for i in mine if i.status in OPEN]
        overdue = []
        for row in open_rows:
            due = _due(gw.client.get_invoice(row.id, as_org=principal.org), contract)
            if due is not None and due < now:
                overdue.append({"id": row.id, "period": row.period, "total": row.total,
                                "due": due.isoformat()})
        items.append({
            "id": view.id, "customer": view.customer, "status": view.status, "currency": view.currency,
            "period": period, "readings": merged.readings, "usage_to_date": rated["total"],
            "forecast": predicted["total"] if predicted else None,
            "invoiced": _money([i.total for i in mine]), "invoices": len(mine),
            "open": [{"id": i.id, "period": i.period, "total": i.total, "status": i.status}
                     for i in open_rows],
            "open_total": _money([i.total for i in open_rows]), "overdue": overdue,
            "dead_letters": [d for d in dead if d["contract_id"] == view.id],
            "alerts": alerts.get(view.id, 0),
        })
    return {"org": principal.org, "as_of": now.isoformat(), "contracts": items}


def _dead_letters(services: Services, org: str) -> list[dict[str, Any]]:
    with services.db() as session:
        rows = session.scalars(select(Delivery).where(Delivery.provider_org == org,
                                                      Delivery.state == DEAD_LETTER))
        return [{"id": r.id, "invoice_id": r.invoice_id, "contract_id": r.contract_id, "target": r.target,
                 "connector": r.connector, "error": r.last_error_code} for r in rows]


# --- the auditor -----------------------------------------------------------------------------------

def _verified(services: Services) -> dict[str, dict[str, Any]]:
    """invoice id -> the last verification report in this hub process (verifying again refreshes it)."""
    return services.portal_verified


@router.get("/v1/portal/audit", summary="Invoices with their verification state (auditors)")
def audit_overview(
    services: ServicesDep,
    principal: Principal = Depends(require_roles("auditor")),
) -> dict[str, Any]:
    with services.db() as session:
        rows = list(session.scalars(select(InvoiceView).order_by(InvoiceView.contract_id, InvoiceView.period,
                                                                 InvoiceView.id)))
    known = dict(_verified(services))
    items = []
    for r in rows:
        report = known.get(r.id)
        state = "unverified" if report is None else ("verified" if report["ok"] else "failed")
        items.append({"id": r.id, "type": r.type, "contract_id": r.contract_id, "period": r.period,
                      "provider": r.provider, "customer": r.customer, "status": r.status,
                      "currency": r.currency, "total": r.total, "verification": state,
                      "verified_at": None if report is None else report["verified_at"]})
    return {"items": items}


@router.post("/v1/invoices/{invoice_id}/verification", tags=["audit"],
             summary="Build the invoice's proof bundle and verify it here with the offline verifier",
             description="The same `verify_bundle` that `ledgerhub audit verify` runs: every signature, "
             "certificate, hash link, reading and amount. The report lists what was checked and what failed.",
             responses=problem_responses(404, 501))
def verify_invoice(
    invoice_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("auditor", "provider", "customer")),
) -> dict[str, Any]:
    gw.invoice(invoice_id, principal)  # visibility first: 404 for others' invoices
    builder = services.proof_builder or build_proof_bundle
    report = verify_bundle(builder(services, invoice_id, principal))
    body = {**report.to_json(), "summary": report.summary(), "verified_at": services.now().isoformat()}
    _verified(services)[invoice_id] = body
    return body


# --- the customer's export -------------------------------------------------------------------------


@router.get("/v1/contracts/{contract_id}/readings.csv", tags=["usage"],
            summary="The period's readings as CSV, exactly as recorded on the ledger (parties, auditors)",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def readings_csv(
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    period: str | None = Query(default=None, pattern=PERIOD, description="YYYY-MM"),
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> StreamingResponse:
    contract = gw.contract(contract_id, principal)
    period = period or current_period(contract.get("timezone", "UTC"), services.now())
    readings = gw.client.get_readings(contract_id, period, as_org=principal.org).readings

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for i, reading in enumerate(readings, 1):
            writer.writerow(reading)
            if i % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = f"{contract_id}-{period}-readings.csv"
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
