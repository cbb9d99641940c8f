"""Contract-level bank rails: SEPA direct-debit mandates (`PUT/GET /v1/contracts/{id}/mandate`) with the job
that drops one pain.008 per issued invoice of a contract with a mandate (hub/bank/sepa.py, ADR 0041), and
prepaid balances (`GET /v1/contracts/{id}/prepaid`, operator top-ups with evidence; ADR 0043)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chaincode import creditor_ref
from connectors.vat import PartyDataInvalid, check_parties
from hub.api.deps import GatewayDep, Principal, ServicesDep, require_roles
from hub.api.problems import problem_responses
from hub.bank.models import SepaMandate
from hub.bank.sepa import MandateError, mandate_view, validate_mandate
from hub.bank.wiring import collector, money_jobs
from hub.errors import Conflict, Forbidden, HubError, NotFound
from hub.services import LedgerGateway

__all__ = ["collector", "money_jobs", "router"]  # the wiring's names stay importable here

router = APIRouter(prefix="/v1/contracts", tags=["bank"],
                   responses=problem_responses(401, 403, 404, 409, 422))


class MandateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    debtor_org: str = Field(min_length=1, max_length=200, description="must be the contract's customer")
    debtor_name: str = Field(min_length=1, max_length=70)
    iban: str = Field(min_length=1, max_length=50)
    bic: str | None = Field(default=None, max_length=20)
    mandate_id: str = Field(min_length=1, max_length=35)
    signed_on: str = Field(description="YYYY-MM-DD")
    scheme: str = Field(default="CORE", description="CORE or B2B")


@router.put("/{contract_id}/mandate", summary="Put the customer's SEPA direct-debit mandate on a contract "
            "(the contract's provider)")
def put_mandate(
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    body: MandateIn,
    principal: Principal = Depends(require_roles("provider")),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)  # 404 for other orgs' contracts
    parties = services.settings.parties
    try:
        values = validate_mandate(body.model_dump(), contract, dt.datetime.now(dt.UTC).date())
        check_parties((org, parties.get(org) or {}) for org in (contract["provider"], contract["customer"]))
    except PartyDataInvalid as exc:
        raise Conflict(exc.code, "The parties' master data holds an invalid value", str(exc),
                       invalid=exc.problems) from None
    except MandateError as exc:
        raise HubError(exc.code, "Mandate refused", exc.detail, status=exc.status) from None
    with services.db.begin() as session:
        row = session.get(SepaMandate, contract_id)
        if row is None:
            row = SepaMandate(**values)
            session.add(row)
        else:
            for name, value in values.items():
                setattr(row, name, value)
        row.updated_at = dt.datetime.now(dt.UTC)
        session.flush()
        return mandate_view(row)


@router.get("/{contract_id}/mandate", summary="The contract's SEPA direct-debit mandate (parties)")
def get_mandate(
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("provider", "customer")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    with services.db() as session:
        row = session.get(SepaMandate, contract_id)
        if row is None:
            raise NotFound("no_mandate", "No mandate", f"contract {contract_id} has no SEPA mandate")
        return mandate_view(row)


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_up_id: str = Field(min_length=1, max_length=200,
                           description="fixed by the caller: a retry is a no-op")
    amount: str = Field(pattern=r"^\d+(\.\d+)?$")
    evidence: str = Field(min_length=1, max_length=2000, description="what shows the money arrived")


def _prepaid(gw: LedgerGateway, contract_id: str, principal: Principal) -> dict[str, Any]:
    record = gw.client.get_prepaid(contract_id, as_org=principal.org)
    return {**record.raw, "top_up_reference": creditor_ref.for_top_up(contract_id)}


@router.get("/{contract_id}/prepaid", summary="The contract's prepaid balance, its movements and the RF "
            "reference that funds it")
def get_prepaid(
    contract_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    return _prepaid(gw, contract_id, principal)


@router.post("/{contract_id}/prepaid/top-ups", summary="Record money received for the prepaid balance "
             "(operator, with evidence)")
def top_up(
    contract_id: str,
    gw: GatewayDep,
    body: TopUpIn,
    principal: Principal = Depends(require_roles("operator")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    gw.client.top_up_prepaid(contract_id, top_up_id=f"operator:{body.top_up_id}", amount=body.amount,
                             source="operator", evidence=body.evidence, as_org=principal.org)
    return _prepaid(gw, contract_id, principal)


@router.post("/{contract_id}/prepaid/refund", summary="Refund the unused prepaid balance of an ended "
             "contract "
             "by a credit note (operator or the contract's provider; the money job does it by itself)")
def refund_prepaid(
    contract_id: str,
    gw: GatewayDep,
    services: ServicesDep,
    principal: Principal = Depends(require_roles("operator", "provider")),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)
    if principal.org != contract["provider"]:  # the customer's operator sees the contract, may not refund it
        raise Forbidden("forbidden", "Not the provider", "the contract's provider refunds its balance")
    note = dict(gw.client.refund_prepaid(contract_id, as_org=principal.org).raw)
    money_jobs(services)._project(note)
    return note
