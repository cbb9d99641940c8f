"""Invoices: listing (read model), the invoice itself (ledger), proof bundle, UBL, disputes, credit notes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from chaincode import creditor_ref
from connectors.base import InvoiceDocument, Party
from connectors.ubl import MasterDataMissing, build_ubl
from connectors.vat import PartyDataInvalid
from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.api.routers._common import gateway, projector
from hub.store.models import InvoiceView

router = APIRouter(prefix="/v1/invoices", tags=["invoices"],
                   responses=problem_responses(400, 401, 403, 404, 409, 422, 503))
READERS = ("provider", "customer", "auditor")

# Where the proof bundle builder may live (the audit area); first one found wins. A callable may also be
# put on services.extras["proof_builder"]: (services, invoice_id, principal) -> dict.
PROOF_BUILDERS = (("hub.audit.proof", "build_proof_bundle"), ("hub.audit.proof", "build_bundle"),
                  ("hub.audit.bundle", "build_bundle"))


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", description="default: the whole total")


@router.get("", summary="Invoices visible to the caller, filtered by contract and status")
def list_invoices(
    contract: str | None = Query(default=None, description="contract id"),
    status: str | None = Query(default=None, description="ISSUED, POSTED, PARTIALLY_PAID, SETTLED, ..."),
    period: str | None = Query(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    principal: Principal = Depends(require_roles(*READERS)),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    query = select(InvoiceView).order_by(InvoiceView.contract_id, InvoiceView.period, InvoiceView.id)
    if principal.role == "provider":
        query = query.where(InvoiceView.provider == principal.org)
    elif principal.role == "customer":
        query = query.where(InvoiceView.customer == principal.org)
    if contract:
        query = query.where(InvoiceView.contract_id == contract)
    if status:
        query = query.where(InvoiceView.status == status.upper())
    if period:
        query = query.where(InvoiceView.period == period)
    with services.db() as session:
        rows = session.scalars(query).all()
    return {"items": [
        {"id": r.id, "type": r.type, "contract_id": r.contract_id, "period": r.period, "status": r.status,
         "currency": r.currency, "total": r.total, "provider": r.provider, "customer": r.customer,
         "tx_id": r.tx_id, "block": r.block} for r in rows
    ]}


@router.get("/{invoice_id}", summary="An invoice with its lines and status history")
def get_invoice(
    invoice_id: str,
    principal: Principal = Depends(require_roles(*READERS)),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    invoice = gateway(services).invoice(invoice_id, principal)
    if invoice.get("type", "invoice") == "invoice":
        # derived from the id, never stored: the ISO 11649 reference the payer quotes (ADR 0042)
        invoice["payment_reference"] = creditor_ref.for_invoice(invoice_id)
    return invoice


def _proof_builder(services: Services) -> Callable[..., Any] | None:
    builder = services.extras.get("proof_builder")
    if builder is not None:
        return builder
    for module_name, attr in PROOF_BUILDERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    return None


@router.get("/{invoice_id}/proof", summary="Proof bundle (JSON) for offline verification",
            responses=problem_responses(409, 501))
def get_proof(
    invoice_id: str,
    principal: Principal = Depends(require_roles(*READERS)),
    services: Services = Depends(get_services),
) -> JSONResponse:
    gateway(services).invoice(invoice_id, principal)  # visibility first: 404 for others' invoices
    builder = _proof_builder(services)
    if builder is None:
        raise ApiError(501, "not_available", "Proof bundles are not available in this build")
    bundle = builder(services, invoice_id, principal)
    disposition = f'attachment; filename="{invoice_id}.proof.json"'
    return JSONResponse(bundle, headers={"Content-Disposition": disposition})


def _party(services: Services, org: str) -> Any:
    data = dict(services.settings.parties.get(org, {}))
    data.setdefault("name", org)
    data["org"] = org
    fields = set(Party.__dataclass_fields__)
    return Party(**{k: v for k, v in data.items() if k in fields})


@router.get("/{invoice_id}/ubl", summary="UBL 2.1 / PEPPOL BIS Billing 3.0 XML",
            response_class=Response, responses={200: {"content": {"application/xml": {}}}})
def get_ubl(
    invoice_id: str,
    principal: Principal = Depends(require_roles(*READERS)),
    services: Services = Depends(get_services),
) -> Response:
    gw = gateway(services)
    invoice = gw.invoice(invoice_id, principal)
    contract = gw.contract(invoice["contract_id"], principal)
    document = InvoiceDocument(invoice=invoice, contract=contract,
                               seller=_party(services, contract["provider"]),
                               buyer=_party(services, contract["customer"]))
    try:
        xml = build_ubl(document)
    except MasterDataMissing as exc:
        raise ApiError(409, exc.code, "The parties' master data cannot make a valid e-invoice", str(exc),
                       missing=exc.gaps) from exc
    except PartyDataInvalid as exc:
        raise ApiError(409, exc.code, "The parties' master data holds an invalid value", str(exc),
                       invalid=exc.problems) from exc
    return Response(xml, media_type="application/xml")


@router.post("/{invoice_id}/dispute", summary="Dispute an invoice (customer) -> DISPUTED")
def dispute(
    invoice_id: str,
    body: DisputeIn,
    principal: Principal = Depends(require_roles("customer")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    gw = gateway(services)
    gw.invoice(invoice_id, principal)
    gw.submit("Dispute", {"invoice_id": invoice_id, "reason": body.reason}, as_org=principal.org)
    invoice = gw.invoice(invoice_id, principal)
    projector(services).write_invoice(invoice)
    return invoice


@router.post("/{invoice_id}/credit-notes", status_code=201,
             summary="Issue a credit note against a disputed invoice (provider) -> CREDITED")
def credit_note(
    invoice_id: str,
    body: CreditNoteIn,
    principal: Principal = Depends(require_roles("provider")),
    services: Services = Depends(get_services),
) -> JSONResponse:
    gw = gateway(services)
    gw.invoice(invoice_id, principal)
    arg: dict[str, Any] = {"invoice_id": invoice_id, "reason": body.reason}
    if body.amount is not None:
        arg["amount"] = body.amount
    _commit, answer = gw.submit("IssueCreditNote", arg, as_org=principal.org)
    answer = answer or {}
    note_id = answer.get("credit_note_id") or answer.get("id")
    note = gw.invoice(str(note_id), principal)
    projector(services).write_invoice(note)
    projector(services).write_invoice(gw.invoice(invoice_id, principal))
    return JSONResponse(note, status_code=201)
