"""Bank statements: import (operator), the reconciliation queue (provider, operator) and its resolution."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from hub.api.deps import Principal, ServicesDep, require_roles
from hub.api.problems import ApiError, problem_responses
from hub.bank.camt import StatementError
from hub.bank.models import QUEUE_STATES
from hub.bank.service import BankError
from hub.bank.wiring import importer
from hub.errors import Conflict, HubError

router = APIRouter(prefix="/v1/bank-statements", tags=["bank"],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 503))
XML_TYPES = ("application/xml", "text/xml")


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoice_id: str | None = Field(default=None, min_length=1, max_length=250,
                                   description="the invoice this entry pays (default: a held entry's "
                                   "candidate)")
    dismiss: bool = Field(default=False, description="not an invoice payment: take it out of the queue")
    note: str | None = Field(default=None, max_length=2000)


def _problem(exc: StatementError | BankError) -> HubError:
    titles = {"statement_too_large": "Statement too large", "malformed_xml": "Malformed XML",
              "xml_dtd_forbidden": "DTDs and entities are not accepted",
              "unsupported_statement": "Not a camt.053 or camt.054 statement",
              "invalid_statement": "Invalid statement", "unknown_currency": "Unknown currency",
              "invalid_amount": "Invalid amount", "currency_mismatch": "Currency does not match the account",
              "bank_entry_conflict": "Bank reference imported before with other content"}
    extra = getattr(exc, "extra", {})
    return HubError(exc.code, titles.get(exc.code, exc.code.replace("_", " ").capitalize()), exc.detail,
                    status=exc.status, **extra)


@router.post("", summary="Import a camt.053 / camt.054 statement (operator): match, record payments",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/xml": {"schema": {"type": "string", "format": "binary"}}}}})
async def import_statement(
    request: Request,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("operator")),
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in XML_TYPES:
        raise ApiError(415, "unsupported_media_type", "Send the statement as application/xml",
                       f"content type {content_type or 'none'!r}")
    data = await request.body()
    try:
        report = await run_in_threadpool(importer(services).import_statement, data, principal.org)
    except (StatementError, BankError) as exc:
        raise _problem(exc) from None
    except IntegrityError:
        raise Conflict("bank_import_conflict", "Another import of the same entries is running",
                       "retry: the entries the other import records will then be duplicates") from None
    return report.as_dict()


@router.get("/queue", summary="The reconciliation queue: entries not (yet) recorded against an invoice")
def queue(
    services: ServicesDep,
    state: str | None = Query(default=None, description="pending, held or unmatched (default: all three)"),
    principal: Principal = Depends(require_roles("provider", "operator")),
) -> dict[str, Any]:
    if state is not None and state not in QUEUE_STATES:
        raise ApiError(422, "invalid_argument", "Unknown queue state", f"state must be one of {QUEUE_STATES}")
    states = QUEUE_STATES if state is None else (state,)
    return {"items": importer(services).queue(principal.org, states)}


@router.post("/entries/{entry_id}/resolve",
             summary="Assign a queued entry to an invoice (records the payment), confirm a held match, "
             "or dismiss it")
def resolve(
    entry_id: str,
    body: ResolveIn,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("provider", "operator")),
) -> dict[str, Any]:
    try:
        return importer(services).resolve(entry_id, principal.org, invoice_id=body.invoice_id,
                                          dismiss=body.dismiss, note=body.note)
    except BankError as exc:
        raise _problem(exc) from None
