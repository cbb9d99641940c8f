"""Amendments (ADR 0046) and the exact invoice preview (ADR 0047).

The provider proposes a new plan version effective at an instant, or an end date; the customer accepts
(both orgs endorse the contract's new version) or rejects. Rules and refusals are the chaincode's
(`chaincode/tx/amendments.py`); the hub checks who may see the contract (404 otherwise) and the role
(403), and answers the ledger's refusals as problem+json with the same stable codes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub import amendments as hooks
from hub.api.deps import GatewayDep, NowDep, Principal, ProjectorDep, require_roles
from hub.api.problems import problem_responses
from hub.billing.usage import invoice_preview

router = APIRouter(prefix="/v1/contracts", tags=["amendments"],
                   responses=problem_responses(400, 401, 403, 404, 409, 422, 503))

PERIOD = Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
ID_PATTERN = r"^[A-Za-z0-9._:-]+$"


class AmendmentIn(BaseModel):
    """A new plan version (`plan` + `effective_from`) or an end (`end`, the contract's last day).
    `plan` holds the pricing fields that change (charges, minimum_commitment, maximum); any other
    contract field it repeats must keep its value (else 400 `amendment_changes_fixed_terms`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN,
                    description="chosen by the provider; proposing the same amendment again is a no-op")
    effective_from: str | None = Field(default=None, description="RFC 3339 instant, in the future",
                                       examples=["2026-10-26T00:00:00+01:00"])
    plan: dict[str, Any] | None = None
    end: str | None = Field(default=None, description="YYYY-MM-DD, the contract's last day")
    note: str | None = Field(default=None, max_length=2000)


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


PROPOSE_DESCRIPTION = (
    "A new plan version effective at an instant in the future (a period start or mid-period): "
    "`{id, effective_from, plan: {charges?, minimum_commitment?, maximum?}, note?}`; or an end: "
    "`{id, end: YYYY-MM-DD, note?}` (the last day; the period holding it is the last, its invoice due "
    "once the contract has ended). A period spanning two versions is rated exactly: readings before the "
    "instant under the old version, at or after it under the new; flat fees, minimum commitment and "
    "maximum prorated by the share of the period's seconds, rounded once per line, half-up (ADR 0046). "
    "Refusals, nothing written: 403 `forbidden`, 404 `unknown_contract`, 409 `amendment_pending`, "
    "`amendment_exists`, `amendment_in_past`, `amendment_overlaps`, `contract_not_active`, 400 "
    "`amendment_outside_term`, `amendment_changes_fixed_terms`, `invalid_plan`, `invalid_argument`."
)
AMENDMENT_EXAMPLE = {
    "id": "am-2026-10", "effective_from": "2026-10-26T00:00:00+01:00", "note": "price list 2027",
    "plan": {"charges": [{"id": "platform", "model": "flat", "amount": "620.00"},
                         {"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "95.00"}],
             "minimum_commitment": "3600.00"},
}


@router.post("/{contract_id}/amendments", status_code=201, description=PROPOSE_DESCRIPTION,
             summary="Propose an amendment (provider): a new plan version or an end date -> PROPOSED",
             openapi_extra={"requestBody": {"content": {"application/json": {"example": AMENDMENT_EXAMPLE}}}})
def propose(
    contract_id: str,
    gw: GatewayDep,
    amendment: AmendmentIn,
    principal: Principal = Depends(require_roles("provider")),
) -> JSONResponse:
    gw.contract(contract_id, principal)  # 404 unless this provider's contract
    record = gw.client.propose_amendment(contract_id, amendment.id, effective_from=amendment.effective_from,
                                         plan=amendment.plan, end=amendment.end, note=amendment.note,
                                         as_org=principal.org)
    return JSONResponse(record.raw, status_code=201)


@router.get("/{contract_id}/amendments/{amendment_id}", summary="One amendment (parties, auditors)")
def get_amendment(
    contract_id: str,
    gw: GatewayDep,
    amendment_id: str,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    return dict(gw.client.get_amendment(contract_id, amendment_id, as_org=principal.org).raw)


@router.post("/{contract_id}/amendments/{amendment_id}/accept",
             summary="Accept an amendment (customer): both orgs endorse the contract's new version",
             description="-> `{amendment, contract}`; accepting again returns the same. Refused once the "
             "amendment's instant has passed (409 `amendment_in_past`) or after a rejection (409 "
             "`invalid_state_transition`).")
def accept(
    contract_id: str,
    gw: GatewayDep,
    projector: ProjectorDep,
    amendment_id: str,
    principal: Principal = Depends(require_roles("customer")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)  # 404 unless this customer's contract
    accepted = gw.client.accept_amendment(contract_id, amendment_id, as_org=principal.org)
    contract = gw.contract(contract_id, principal)
    record = dict(accepted.raw)
    hooks.on_accepted(projector, contract, record, accepted.commit)
    return {"amendment": record, "contract": contract}


@router.post("/{contract_id}/amendments/{amendment_id}/reject",
             summary="Reject an amendment (customer); the contract stays as it is")
def reject(
    contract_id: str,
    gw: GatewayDep,
    amendment_id: str,
    answer: AnswerIn | None = None,
    principal: Principal = Depends(require_roles("customer")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    reason = None if answer is None else answer.reason
    rejected = gw.client.reject_amendment(contract_id, amendment_id, reason=reason, as_org=principal.org)
    return dict(rejected.raw)


@router.get("/{contract_id}/history",
            summary="Every plan version and amendment, who proposed and accepted it, with tx ids")
def history(
    contract_id: str,
    gw: GatewayDep,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    gw.contract(contract_id, principal)
    return dict(gw.client.get_contract_history(contract_id, as_org=principal.org).raw)


@router.get("/{contract_id}/periods/{period}/preview",
            summary="The invoice exactly as closing the period now would issue it, beside the forecast",
            description="`{contract_id, period, as_of, status: OPEN|CLOSED, invoice, forecast}`: the "
            "contract's own CloseBillingPeriod evaluated as a query (nothing written, ADR 0047); for a "
            "closed period the issued invoice. `forecast` is the run-rate estimate of GET .../usage.")
def preview(
    contract_id: str,
    gw: GatewayDep,
    now: NowDep,
    period: str = PERIOD,
    principal: Principal = Depends(require_roles("provider", "customer", "auditor")),
) -> dict[str, Any]:
    contract = gw.contract(contract_id, principal)
    return invoice_preview(gw.client, contract, period, principal.org, now)
