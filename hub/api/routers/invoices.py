"""Invoices: listing (read model), the invoice itself (ledger), proof bundle, UBL, disputes, credit notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from chaincode import creditor_ref
from connectors.base import InvoiceDocument, Party
from connectors.ubl import MasterDataMissing, build_ubl
from connectors.vat import PartyDataInvalid
from hub.api.deps import GatewayDep, Principal, ProjectorDep, Services, ServicesDep, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.audit.proof import build_proof_bundle
from hub.billing.contracts import list_invoices as visible_invoices

router = APIRouter(prefix="/v1/invoices", tags=["invoices"],
                   responses=problem_responses(400, 401, 403, 404, 409, 422, 503))
READERS = ("provider", "customer", "auditor")



class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", description="default: the whole total")


@router.get("", summary="Invoices visible to the caller, filtered by contract and status")
def list_invoices(
    services: ServicesDep,
    contract: str | None = Query(default=None, description="contract id"),
    status: str | None = Query(default=None, description="ISSUED, POSTED, PARTIALLY_PAID, SETTLED, ..."),
    period: str | None = Query(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    principal: Principal = Depends(require_roles(*READERS)),
) -> dict[str, Any]:
    items = visible_invoices(services.db, principal, contract=contract, status=status, period=period)
    return {"items": items}


@router.get("/{invoice_id}", summary="An invoice with its lines and status history")
def get_invoice(
    invoice_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles(*READERS)),
) -> dict[str, Any]:
    invoice = gw.invoice(invoice_id, principal)
    if invoice.get("type", "invoice") == "invoice":
        # derived from the id, never stored: the ISO 11649 reference the payer quotes (ADR 0042)
        invoice["payment_reference"] = creditor_ref.for_invoice(invoice_id)
    return invoice


def proof_builder(services: Services) -> Callable[..., Any]:
    """What builds a proof bundle: the audit area's builder, or one a test or configure hook put on
    `services.proof_builder` ((services, invoice_id, principal) -> dict)."""
    return services.proof_builder or build_proof_bundle


@router.get("/{invoice_id}/proof", summary="Proof bundle (JSON) for offline verification",
            responses=problem_responses(409, 501))
def get_proof(
    invoice_id: str,
    services: ServicesDep,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles(*READERS)),
) -> JSONResponse:
    gw.invoice(invoice_id, principal)  # visibility first: 404 for others' invoices
    bundle = proof_builder(services)(services, invoice_id, principal)
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
    services: ServicesDep,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles(*READERS)),
) -> Response:
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
    gw: GatewayDep,
    projector: ProjectorDep,
    principal: Principal = Depends(require_roles("customer")),
) -> dict[str, Any]:
    gw.invoice(invoice_id, principal)
    gw.client.dispute(invoice_id, reason=body.reason, as_org=principal.org)
    invoice = gw.invoice(invoice_id, principal)
    projector.write_invoice(invoice)
    return invoice


@router.post("/{invoice_id}/credit-notes", status_code=201,
             summary="Issue a credit note against a disputed invoice (provider) -> CREDITED")
def credit_note(
    invoice_id: str,
    body: CreditNoteIn,
    gw: GatewayDep,
    projector: ProjectorDep,
    principal: Principal = Depends(require_roles("provider")),
) -> JSONResponse:
    gw.invoice(invoice_id, principal)
    issued = gw.client.issue_credit_note(invoice_id, reason=body.reason, amount=body.amount,
                                         as_org=principal.org)
    note = gw.invoice(issued.id, principal)  # as stored (and as GET /v1/invoices/{id} answers it)
    projector.write_invoice(note)
    projector.write_invoice(gw.invoice(invoice_id, principal))
    return JSONResponse(note, status_code=201)
