"""Progressive billing (ADR 0051): a contract with a `billing_threshold` is invoiced during the period
whenever the cost to date not yet invoiced reaches the threshold; the period's final invoice bills the rest.

`IssueInterimInvoice {contract_id, period}` (provider or customer; the hub's job calls it when the running
period shows it due) rates the running aggregate (`chaincode.tx.running`), and issues
`inv-{contract}-{period}-i{n}` for the difference between the cost to date and what earlier interim invoices
billed: each line is the charge's amount (and quantity) to date minus what was billed of it before, and
subtotal, tax and total are differences the same way. It is refused (`interim_not_due`) while that
difference is below the threshold, so a retried call never bills the same usage twice. `CloseBillingPeriod`
then calls `deduct`: the final invoice `inv-{contract}-{period}` carries the same differences for the rest,
names the interim invoices in `interim_invoices` and what they billed in `deducted`, and keeps the whole
period's figures in `period_total`. The differences telescope, so interim totals plus the final total equal,
to the cent, the single invoice the period would have had.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from chaincode import keys, rating, terms
from chaincode.errors import ChaincodeError
from chaincode.model import (
    ACTIVE,
    CLOSED,
    ISSUED,
    format_ts,
    history_entry,
    require_id,
    require_party,
    require_period,
)
from chaincode.money import EXACT, ZERO, format_decimal
from chaincode.tx import prepaid, running
from chaincode.tx.common import Tx, parse_plan


def interim_id(contract_id: str, period: str, n: int) -> str:
    return f"{keys.invoice_id(contract_id, period)}-i{n}"


def _difference(now: dict[str, Any], billed: dict[str, Any], currency: str) -> dict[str, Any]:
    """Lines, subtotal, tax and total of `now` (a rated body) minus `billed` (what was invoiced before)."""
    before = {ln["charge_id"]: ln for ln in billed["lines"]}
    lines = []
    with localcontext(EXACT):
        for line in now["lines"]:
            prior = before.pop(line["charge_id"], None)
            q0, a0 = (Decimal(prior["quantity"]), Decimal(prior["amount"])) if prior else (ZERO, ZERO)
            lines.append({**line, "quantity": format_decimal(Decimal(line["quantity"]) - q0),
                          "amount": rating.format_money(Decimal(line["amount"]) - a0, currency)})
        for prior in before.values():  # a line billed before that the cost to date no longer has
            lines.append({**prior, "quantity": format_decimal(-Decimal(prior["quantity"])),
                          "amount": rating.format_money(-Decimal(prior["amount"]), currency)})
        out = {f: rating.format_money(Decimal(now[f]) - Decimal(billed[f]), currency)
               for f in ("subtotal", "tax", "total")}
    return {"lines": lines, **out}


def _billed_after(billed: dict[str, Any], now: dict[str, Any], readings: int) -> dict[str, Any]:
    return {"subtotal": now["subtotal"], "tax": now["tax"], "total": now["total"], "readings": readings,
            "lines": [{"charge_id": ln["charge_id"], "quantity": ln["quantity"], "amount": ln["amount"]}
                      for ln in now["lines"]]}


def issue_interim(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    from chaincode.tx.invoices import rated_body  # invoices imports this module

    contract = tx.contract(require_id(body, "contract_id"))
    period = require_period(body)
    require_party(tx.creator, contract, what="issue an interim invoice")
    if contract["status"] != ACTIVE:
        raise ChaincodeError("contract_not_active", f"contract {contract['id']} is {contract['status']}",
                             status=contract["status"])
    threshold = terms.billing_threshold(contract)
    closed = tx.get(keys.period(contract["id"], period))
    if closed is not None and closed.get("status") == CLOSED:
        raise ChaincodeError("period_closed", f"period {period} is closed", period=period)
    run = tx.get(running.key(contract["id"], period))
    plan = parse_plan(contract)
    currency = contract["currency"]
    if threshold is None or run is None:
        raise ChaincodeError("interim_not_due", "no billing threshold or no usage in this period",
                             period=period)
    agg = rating.BatchAggregate.from_json(run["usage"])
    now = rated_body(contract, plan, agg)
    with localcontext(EXACT):
        unbilled = Decimal(now["total"]) - Decimal(run["billed"]["total"])
    if unbilled < threshold:
        raise ChaincodeError("interim_not_due", f"{rating.format_money(unbilled, currency)} not yet invoiced "
                             f"is below the threshold {rating.format_money(threshold, currency)}",
                             unbilled=rating.format_money(unbilled, currency),
                             threshold=rating.format_money(threshold, currency))
    n = len(run["interims"]) + 1
    invoice_id = interim_id(contract["id"], period, n)
    diff = _difference(now, run["billed"], currency)
    invoice = {
        "id": invoice_id, "type": "invoice", "kind": "interim", "sequence": n, "contract_id": contract["id"],
        "period": period, "provider": contract["provider"], "customer": contract["customer"],
        "erp": contract.get("erp"), **now, **diff,
        "readings": agg.readings - int(run["billed"]["readings"]), "readings_to_date": agg.readings,
        "status": ISSUED, "tx_id": tx.tx_id, "issued_at": format_ts(tx.timestamp), "erp_refs": [],
        "payments": [], "paid": rating.format_money(ZERO, currency), "credit_notes": [],
        "history": [history_entry(ISSUED, tx.tx_id, tx.timestamp)],
    }
    running.put(tx, contract, {**run, "billed": _billed_after(run["billed"], now, agg.readings),
                               "interims": [*run["interims"], invoice_id]})
    invoice = prepaid.settle_at_issue(tx, contract, invoice)
    inv_key = keys.invoice(invoice_id)
    tx.put(inv_key, invoice)
    tx.stub.set_key_endorsement(inv_key, [contract["provider"], contract["customer"]])
    tx.event("InvoiceIssued", {"invoice_id": invoice_id, "contract_id": contract["id"], "period": period,
                               "currency": currency, "total": invoice["total"], "erp": contract.get("erp"),
                               "interim": n})
    return invoice


def deduct(tx: Tx, contract: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    """The hook `CloseBillingPeriod` calls on the final invoice: without interim invoices unchanged."""
    run = tx.get(running.key(contract["id"], invoice["period"]))
    if run is None:
        return invoice
    running.put(tx, contract, {**run, "closed_by": invoice["id"]})  # nothing more is due for this period
    if not run.get("interims"):
        return invoice
    billed = run["billed"]
    diff = _difference(invoice, billed, invoice["currency"])
    return {**invoice, **diff, "interim_invoices": list(run["interims"]),
            "deducted": {f: billed[f] for f in ("subtotal", "tax", "total")},
            "period_total": {f: invoice[f] for f in ("lines", "subtotal", "tax", "total")}}


def get_running(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetRunning {contract_id, period?}`: the running period (None when it has none), its cost to date,
    what interim invoices billed, and whether an interim invoice is due now (what the hub's job asks).
    Without `period`: `{"contract_id", "periods": [the same for every period not yet invoiced]}`."""
    contract = tx.contract(require_id(body, "contract_id"))
    if body.get("period") is None:
        runs = [run for _, run in tx.scan(running.RUNNING, [contract["id"]]) if not run.get("closed_by")]
        return {"contract_id": contract["id"],
                "periods": [_running_view(tx, contract, run["period"], run) for run in runs]}
    period = require_period(body)
    return _running_view(tx, contract, period, tx.get(running.key(contract["id"], period)))


def _running_view(tx: Tx, contract: dict[str, Any], period: str,
                  run: dict[str, Any] | None) -> dict[str, Any]:
    from chaincode.tx.invoices import rated_body

    threshold = terms.billing_threshold(contract)
    out: dict[str, Any] = {"contract_id": contract["id"], "period": period, "running": run,
                           "billing_threshold": None, "interim_due": False}
    if threshold is not None:
        out["billing_threshold"] = rating.format_money(threshold, contract["currency"])
    if run is None:
        return out
    now = rated_body(contract, parse_plan(contract), rating.BatchAggregate.from_json(run["usage"]))
    with localcontext(EXACT):
        unbilled = Decimal(now["total"]) - Decimal(run["billed"]["total"])
    due = threshold is not None and not run.get("closed_by") and contract["status"] == ACTIVE
    out.update(cost_to_date=now["total"], unbilled=rating.format_money(unbilled, contract["currency"]),
               interim_due=bool(due and unbilled >= threshold))
    return out
