"""Contracts and invoices as the read models list them, filtered by the one visibility rule, and the
provider's proposal (the chaincode judges the plan; the hub checks the proposer's org)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.billing.client import ContractClient
from hub.billing.visibility import visible_to
from hub.errors import Forbidden
from hub.principal import Principal
from hub.store.models import ContractView, InvoiceView


class ContractLedger(Protocol):
    """What proposing needs of the ledger gateway (hub.services.LedgerGateway): its contract client and the
    visibility-checked contract look-up."""

    client: ContractClient

    def contract(self, contract_id: str, principal: Principal) -> dict[str, Any]: ...


class ContractWriter(Protocol):
    def write_contract(self, contract: dict[str, Any]) -> None: ...


def propose_contract(gw: ContractLedger, projector: ContractWriter, contract: dict[str, Any],
                     principal: Principal) -> dict[str, Any]:
    """Propose `contract` as its provider -> the PROPOSED contract, written through to the read model."""
    if contract["provider"] != principal.org:
        raise Forbidden("forbidden", "Not the provider", "a provider proposes contracts for its own org only")
    gw.client.propose_contract(contract, as_org=principal.org)
    record = gw.contract(contract["id"], principal)
    projector.write_contract(record)
    return record


def list_contracts(db: Callable[[], Session], principal: Principal, *,
                   status: str | None = None) -> list[dict[str, Any]]:
    query = select(ContractView).where(*visible_to(principal, ContractView)).order_by(ContractView.id)
    if status:
        query = query.where(ContractView.status == status)
    with db() as session:
        rows = session.scalars(query).all()
    return [{"id": r.id, "provider": r.provider, "customer": r.customer, "status": r.status,
             "currency": r.currency, "timezone": r.timezone, "start": r.start, "end": r.end} for r in rows]


def list_invoices(db: Callable[[], Session], principal: Principal, *, contract: str | None = None,
                  status: str | None = None, period: str | None = None) -> list[dict[str, Any]]:
    query = (select(InvoiceView).where(*visible_to(principal, InvoiceView))
             .order_by(InvoiceView.contract_id, InvoiceView.period, InvoiceView.id))
    if contract:
        query = query.where(InvoiceView.contract_id == contract)
    if status:
        query = query.where(InvoiceView.status == status.upper())
    if period:
        query = query.where(InvoiceView.period == period)
    with db() as session:
        rows = session.scalars(query).all()
    return [{"id": r.id, "type": r.type, "contract_id": r.contract_id, "period": r.period, "status": r.status,
             "currency": r.currency, "total": r.total, "provider": r.provider, "customer": r.customer,
             "tx_id": r.tx_id, "block": r.block} for r in rows]
