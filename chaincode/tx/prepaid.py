"""Prepaid balances (ADR 0043): a customer funds a contract in advance; an invoice issued while the balance
covers it is settled in the same transaction that issues it (days sales outstanding zero).

`prepaid~{contract_id}`: `{"contract_id", "currency", "balance", "movements": [{"id", "kind": "top_up" |
"draw", "amount", "invoice_id"?, "source"?, "evidence"?, "tx_id", "at"}]}`, endorsed by both parties. A
contract without the key has no prepaid balance: closing its periods behaves exactly as before. The balance
is never negative.

ADR 0051 adds: every committed usage batch draws the balance down to the period's cost to date
(`chaincode.tx.running`); `low` while the balance is below the contract's `prepaid.low_balance`; a returned
top-up is reversed (`ReverseTopUp`); an ENDED contract's unused balance is refunded by a credit note
(`RefundPrepaid`).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from chaincode import rating, terms
from chaincode.errors import ChaincodeError
from chaincode.keys import create_composite_key
from chaincode.model import (
    SETTLED,
    format_ts,
    history_entry,
    optional_str,
    parse_amount,
    require_id,
    require_party,
    require_str,
)
from chaincode.money import EXACT, ZERO, minor_units
from chaincode.tx import running
from chaincode.tx.common import Tx

PREPAID = "prepaid"


def key(contract_id: str) -> str:
    return create_composite_key(PREPAID, [contract_id])


def top_up(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`TopUpPrepaid {contract_id, top_up_id, amount, source?, evidence?}` (provider or customer): the
    balance grows by `amount`; the same top-up id again is a no-op, with another amount `payment_conflict`."""
    contract = tx.contract(require_id(body, "contract_id"))
    require_party(tx.creator, contract, what="top up a prepaid balance")
    top_up_id = require_str(body, "top_up_id")
    if contract["status"] != "ACTIVE":
        raise ChaincodeError("contract_not_active", f"contract {contract['id']} is {contract['status']}",
                             contract_id=contract["id"], status=contract["status"])
    currency = contract["currency"]
    amount = parse_amount(body.get("amount"), "amount", minor_units(currency))
    record = tx.get(key(contract["id"])) or {"contract_id": contract["id"], "currency": currency,
                                             "balance": rating.format_money(ZERO, currency), "movements": []}
    for movement in record["movements"]:
        if movement["id"] == top_up_id:
            if movement["amount"] == rating.format_money(amount, currency):
                return record
            raise ChaincodeError("payment_conflict", f"top-up {top_up_id} was recorded with amount "
                                 f"{movement['amount']}", top_up_id=top_up_id)
    with localcontext(EXACT):
        balance = Decimal(record["balance"]) + amount
    movement = {"id": top_up_id, "kind": "top_up", "amount": rating.format_money(amount, currency),
                "source": optional_str(body, "source"), "evidence": optional_str(body, "evidence"),
                "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)}
    updated = write_balance(tx, contract, record, balance, movement)
    tx.event("PrepaidToppedUp", {"contract_id": contract["id"], "top_up_id": top_up_id,
                                 "amount": movement["amount"], "balance": updated["balance"]})
    return updated


def write_balance(tx: Tx, contract: dict[str, Any], record: dict[str, Any], balance: Decimal,
                  movement: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the balance (and a movement, if given) with the low-balance flag kept right: `low` is set when
    the balance falls below the contract's `prepaid.low_balance` (its id, `low:{tx_id}`, names that one
    crossing; the hub raises one alert and at most one top-up collection for it) and cleared once the
    balance is back at or above it."""
    if balance < 0:  # every caller computes a non-negative balance; a bug must not write one
        raise ChaincodeError("prepaid_negative", f"prepaid balance of {contract['id']} would be {balance}")
    updated = {**record, "balance": rating.format_money(balance, contract["currency"])}
    if movement is not None:
        updated["movements"] = [*record["movements"], movement]
    low_balance = terms.prepaid_terms(contract).get("low_balance")
    if low_balance is not None and balance < low_balance:
        if record.get("low") is None:
            updated["low"] = {"id": f"low:{tx.tx_id}", "balance": updated["balance"],
                              "threshold": rating.format_money(low_balance, contract["currency"]),
                              "at": format_ts(tx.timestamp)}
    else:
        updated.pop("low", None)
    tx.put(key(contract["id"]), updated)
    tx.stub.set_key_endorsement(key(contract["id"]), [contract["provider"], contract["customer"]])
    return updated


def get(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetPrepaid {contract_id}`: the record (a zero balance when the contract was never funded) and
    `draws`, every per-batch draw in key order (period, then transaction): the balance history."""
    contract = tx.contract(require_id(body, "contract_id"))
    currency = contract["currency"]
    record = tx.get(key(contract["id"])) or {"contract_id": contract["id"], "currency": currency,
                                             "balance": rating.format_money(ZERO, currency), "movements": []}
    draws = [rec for _, rec in tx.scan(running.DRAW, [contract["id"]])]
    return {**record, "draws": draws}


def settle_at_issue(tx: Tx, contract: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    """Called when an invoice is issued (period close, interim invoice): the money drawn from the balance
    for its period and not yet applied pays it (payment `prepaid:{invoice_id}`). At the period's final
    invoice the balance first pays what the draws have not reached (a top-up after the usage), up to what
    it holds; what was drawn beyond the invoice goes back to the balance. SETTLED when that pays it all,
    else it stays open for the rest (ADR 0051). Without a prepaid balance: unchanged."""
    record = tx.get(key(contract["id"]))
    if record is None or invoice["type"] != "invoice":
        return invoice
    currency = invoice["currency"]
    period = invoice["period"]
    interim = invoice.get("kind") == "interim"
    run = tx.get(running.key(contract["id"], period))
    with localcontext(EXACT):
        total = Decimal(invoice["total"])
        drawn = Decimal(run["drawn"]) if run else ZERO
        applied = Decimal(run["applied"]) if run else ZERO
        unapplied = drawn - applied
        balance = Decimal(record["balance"])
        if not interim and total - unapplied > 0 and balance > 0:
            extra = min(total - unapplied, balance)
            balance -= extra
            unapplied += extra
            record = write_balance(tx, contract, record, balance, {
                "id": f"draw:{invoice['id']}", "kind": "draw", "amount": rating.format_money(extra, currency),
                "invoice_id": invoice["id"], "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)})
        pay = max(ZERO, min(unapplied, total))
        release = unapplied - pay if not interim else ZERO
        if release > 0:
            record = write_balance(tx, contract, record, balance + release, {
                "id": f"release:{invoice['id']}", "kind": "release",
                "amount": rating.format_money(release, currency), "invoice_id": invoice["id"],
                "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)})
    if run is not None:
        done = {"applied": rating.format_money(applied + pay, currency)}
        if not interim:
            settled = rating.format_money(applied + pay + release, currency)  # every drawn cent placed
            done = {"drawn": settled, "applied": settled, "closed_by": invoice["id"]}
        running.put(tx, contract, {**run, **done})
    if pay <= 0:
        return invoice
    payment = {"payment_id": f"prepaid:{invoice['id']}", "amount": rating.format_money(pay, currency),
               "paid_at": format_ts(tx.timestamp), "source": "prepaid", "tx_id": tx.tx_id}
    updated = {**invoice, "payments": [payment], "paid": payment["amount"]}
    if pay < total:
        return updated  # partly paid from the balance; the rest is collected as for any invoice
    return {**updated, "status": SETTLED, "settled_by": "prepaid",
            "history": [*invoice["history"], history_entry(SETTLED, tx.tx_id, tx.timestamp)]}


def reverse_top_up(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ReverseTopUp {contract_id, top_up_id, reversal_id, reason}` (provider or customer): a top-up came back
    (a returned direct debit, a recalled transfer). The balance loses what is left of it; the part the balance
    no longer holds (already drawn for usage) is taken back from the open periods' draws, most recent period
    first, so their invoices bill it; what even that cannot cover is recorded as `unrecovered` (money paid
    out of it settled invoices already). Idempotent by `reversal_id`; the balance never goes negative."""
    contract = tx.contract(require_id(body, "contract_id"))
    require_party(tx.creator, contract, what="reverse a prepaid top-up")
    top_up_id = require_str(body, "top_up_id")
    reversal_id = require_str(body, "reversal_id")
    reason = require_str(body, "reason")
    record = tx.get(key(contract["id"]))
    original = next((m for m in (record or {}).get("movements", []) if m["id"] == top_up_id
                     and m["kind"] == "top_up"), None)
    if record is None or original is None:
        raise ChaincodeError("unknown_top_up", f"contract {contract['id']} has no top-up {top_up_id}",
                             top_up_id=top_up_id)
    done = next((m for m in record["movements"] if m["kind"] == "top_up_reversal"
                 and m["top_up_id"] == top_up_id), None)
    if done is not None:
        if done["id"] == reversal_id:
            return record
        raise ChaincodeError("payment_already_reversed", f"top-up {top_up_id} was reversed by {done['id']}",
                             top_up_id=top_up_id)
    currency = contract["currency"]
    with localcontext(EXACT):
        amount = Decimal(original["amount"])
        balance = Decimal(record["balance"])
        from_balance = min(amount, balance)
        owed = amount - from_balance
        taken_back = ZERO
        for _, run in sorted(tx.scan(running.RUNNING, [contract["id"]]), reverse=True):
            if owed <= 0:
                break
            if run.get("closed_by"):
                continue
            free = Decimal(run["drawn"]) - Decimal(run["applied"])
            take = min(free, owed)
            if take <= 0:
                continue
            owed -= take
            taken_back += take
            running.put(tx, contract, {**run, "drawn": rating.format_money(Decimal(run["drawn"]) - take,
                                                                           currency)})
    movement = {"id": reversal_id, "kind": "top_up_reversal", "top_up_id": top_up_id,
                "amount": original["amount"], "from_balance": rating.format_money(from_balance, currency),
                "from_open_periods": rating.format_money(taken_back, currency),
                "unrecovered": rating.format_money(owed, currency), "reason": reason,
                "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)}
    with localcontext(EXACT):
        updated = write_balance(tx, contract, record, balance - from_balance, movement)
    tx.event("PrepaidTopUpReversed", {"contract_id": contract["id"], "top_up_id": top_up_id,
                                      "reversal_id": reversal_id, "balance": updated["balance"],
                                      "unrecovered": movement["unrecovered"]})
    return updated
