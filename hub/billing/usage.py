"""Reading a contract's usage: the period's aggregate and cost to date with its forecast, the prepaid
balance and progressive billing beside it. One use case behind `GET /v1/contracts/{id}/usage`, the invoice
preview and the portal's alert evaluator; the caller has already checked that the principal may see the
contract (hub/billing/visibility.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from hub.billing.forecast import billing_summary, current_period, forecast, prepaid_summary
from hub.errors import HubError
from hub.ledger.base import ChaincodeRejected


class Evaluator(Protocol):
    """What these reads need of the ledger gateway (hub.services.LedgerGateway)."""

    def evaluate(self, fn: str, arg: Mapping[str, Any], *, as_org: str) -> Any: ...


def period_usage(gw: Evaluator, contract_id: str, period: str, org: str) -> dict[str, Any]:
    usage = gw.evaluate("GetUsage", {"contract_id": contract_id, "period": period}, as_org=org)
    if not isinstance(usage, dict):
        raise HubError("unexpected_ledger_answer", "Unexpected answer from the ledger", status=502)
    return usage


def usage_report(gw: Evaluator, contract: dict[str, Any], period: str | None, org: str,
                 now: dt.datetime) -> dict[str, Any]:
    """`{...usage, contract_id, period, forecast, prepaid?, billing?}` of `period` (default: running)."""
    contract_id = contract["id"]
    period = period or current_period(contract.get("timezone", "UTC"), now)
    usage = period_usage(gw, contract_id, period, org)
    answer = {**usage, "contract_id": contract_id, "period": period,
              "forecast": forecast(usage, contract, period, now)}
    if (prepaid := prepaid_view(gw, contract_id, {**usage, "period": period}, org)) is not None:
        answer["prepaid"] = prepaid
    if (billing := billing_view(gw, contract, period, org)) is not None:
        answer["billing"] = billing
    return answer


def usage_with_forecast(gw: Evaluator, contract_id: str, org: str, now: dt.datetime) -> dict[str, Any]:
    """The running period's usage for `org` with its forecast and currency (the portal's alert evaluator)."""
    contract = gw.evaluate("GetContract", {"id": contract_id}, as_org=org)
    period = current_period(contract.get("timezone", "UTC"), now)
    usage = gw.evaluate("GetUsage", {"contract_id": contract_id, "period": period}, as_org=org)
    return {**usage, "period": period, "currency": contract.get("currency"),
            "forecast": forecast(usage, contract, period, now)}


def invoice_preview(gw: Evaluator, contract: dict[str, Any], period: str, org: str,
                    now: dt.datetime) -> dict[str, Any]:
    """The invoice exactly as closing `period` now would issue it (the contract's own CloseBillingPeriod
    evaluated as a query, ADR 0047), beside the run-rate forecast. Closing runs as a party, so an auditor's
    preview is asked as the provider."""
    party = org if org in (contract["provider"], contract["customer"]) else contract["provider"]
    arg = {"contract_id": contract["id"], "period": period}
    answer = gw.evaluate("PreviewInvoice", arg, as_org=party)
    usage = gw.evaluate("GetUsage", arg, as_org=party)
    return {**answer, "forecast": forecast(usage, contract, period, now)}


def prepaid_view(gw: Evaluator, contract_id: str, usage: dict[str, Any], org: str) -> dict[str, str] | None:
    """The prepaid balance against the cost to date (`prepaid_summary`); None for contracts never funded."""
    try:
        record = gw.evaluate("GetPrepaid", {"contract_id": contract_id}, as_org=org)
        running = gw.evaluate("GetRunning", {"contract_id": contract_id, "period": usage["period"]},
                              as_org=org)
    except ChaincodeRejected:
        return None
    return prepaid_summary(record, running, usage)


def billing_view(gw: Evaluator, contract: dict[str, Any], period: str, org: str) -> dict[str, Any] | None:
    """Progressive billing so far (`billing_summary`); None for contracts without a billing threshold."""
    if contract.get("billing_threshold") is None:
        return None
    view = gw.evaluate("GetRunning", {"contract_id": contract["id"], "period": period}, as_org=org)
    return billing_summary(view)
