"""Reading a contract's usage: the period's aggregate and cost to date with its forecast, the prepaid
balance and progressive billing beside it. One use case behind `GET /v1/contracts/{id}/usage`, the invoice
preview and the portal's alert evaluator; the caller has already checked that the principal may see the
contract (hub/billing/visibility.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.billing.answers import AnswerShapeError
from hub.billing.client import ContractClient
from hub.billing.forecast import billing_summary, current_period, forecast, prepaid_summary
from hub.errors import HubError
from hub.ledger.base import ChaincodeRejected


def period_usage(client: ContractClient, contract_id: str, period: str, org: str) -> dict[str, Any]:
    """`GetUsage` as the ledger answered it; an answer the hub cannot read: 502 `unexpected_ledger_answer`."""
    try:
        usage = client.get_usage(contract_id, period, as_org=org)
    except AnswerShapeError as exc:
        raise HubError("unexpected_ledger_answer", "Unexpected answer from the ledger", status=502) from exc
    return dict(usage.raw)


def usage_report(client: ContractClient, contract: dict[str, Any], period: str | None, org: str,
                 now: dt.datetime) -> dict[str, Any]:
    """`{...usage, contract_id, period, forecast, prepaid?, billing?}` of `period` (default: running)."""
    contract_id = contract["id"]
    period = period or current_period(contract.get("timezone", "UTC"), now)
    usage = period_usage(client, contract_id, period, org)
    answer = {**usage, "contract_id": contract_id, "period": period,
              "forecast": forecast(usage, contract, period, now)}
    if (prepaid := prepaid_view(client, contract_id, {**usage, "period": period}, org)) is not None:
        answer["prepaid"] = prepaid
    if (billing := billing_view(client, contract, period, org)) is not None:
        answer["billing"] = billing
    return answer


def usage_with_forecast(client: ContractClient, contract_id: str, org: str,
                        now: dt.datetime) -> dict[str, Any]:
    """The running period's usage for `org` with its forecast and currency (the portal's alert evaluator)."""
    contract = client.get_contract(contract_id, as_org=org)
    period = current_period(contract.timezone, now)
    usage = dict(client.get_usage(contract_id, period, as_org=org).raw)
    return {**usage, "period": period, "currency": contract.currency,
            "forecast": forecast(usage, dict(contract.raw), period, now)}


def invoice_preview(client: ContractClient, contract: dict[str, Any], period: str, org: str,
                    now: dt.datetime) -> dict[str, Any]:
    """The invoice exactly as closing `period` now would issue it (the contract's own CloseBillingPeriod
    evaluated as a query, ADR 0047), beside the run-rate forecast. Closing runs as a party, so an auditor's
    preview is asked as the provider."""
    party = org if org in (contract["provider"], contract["customer"]) else contract["provider"]
    answer = client.preview_invoice(contract["id"], period, as_org=party)
    usage = client.get_usage(contract["id"], period, as_org=party)
    return {**answer.raw, "forecast": forecast(dict(usage.raw), contract, period, now)}


def prepaid_view(client: ContractClient, contract_id: str, usage: dict[str, Any],
                 org: str) -> dict[str, str] | None:
    """The prepaid balance against the cost to date (`prepaid_summary`); None for contracts never funded."""
    try:
        record = client.get_prepaid(contract_id, as_org=org)
        running = client.get_running_period(contract_id, usage["period"], as_org=org)
    except ChaincodeRejected:
        return None
    return prepaid_summary(dict(record.raw), dict(running.raw), usage)


def billing_view(client: ContractClient, contract: dict[str, Any], period: str,
                 org: str) -> dict[str, Any] | None:
    """Progressive billing so far (`billing_summary`); None for contracts without a billing threshold."""
    if contract.get("billing_threshold") is None:
        return None
    return billing_summary(dict(client.get_running_period(contract["id"], period, as_org=org).raw))
