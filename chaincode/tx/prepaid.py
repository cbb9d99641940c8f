"""Prepaid balances (ADR 0043): a customer funds a contract in advance; an invoice issued while the balance
covers it is settled in the same transaction that issues it (days sales outstanding zero).

`prepaid~{contract_id}`: `{"contract_id", "currency", "balance", "movements": [{"id", "kind": "top_up" |
"draw", "amount", "invoice_id"?, "source"?, "evidence"?, "tx_id", "at"}]}`, endorsed by both parties. A
contract without the key has no prepaid balance: closing its periods behaves exactly as before. The balance
is never negative: a draw happens only when the balance covers the whole invoice.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from chaincode import rating
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
    updated = {**record, "balance": rating.format_money(balance, currency),
               "movements": [*record["movements"], movement]}
    tx.put(key(contract["id"]), updated)
    tx.stub.set_key_endorsement(key(contract["id"]), [contract["provider"], contract["customer"]])
    tx.event("PrepaidToppedUp", {"contract_id": contract["id"], "top_up_id": top_up_id,
                                 "amount": movement["amount"], "balance": updated["balance"]})
    return updated


def get(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`GetPrepaid {contract_id}`: the record, or a zero balance when the contract was never funded."""
    contract = tx.contract(require_id(body, "contract_id"))
    currency = contract["currency"]
    return tx.get(key(contract["id"])) or {"contract_id": contract["id"], "currency": currency,
                                           "balance": rating.format_money(ZERO, currency), "movements": []}


def settle_at_issue(tx: Tx, contract: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    """Called by `CloseBillingPeriod` after rating: when the balance covers the invoice, draw it and issue
    the invoice SETTLED (payment `prepaid:{invoice_id}`). Otherwise (or without a balance) unchanged."""
    record = tx.get(key(contract["id"]))
    if record is None or invoice["type"] != "invoice":
        return invoice
    total = Decimal(invoice["total"])
    with localcontext(EXACT):
        left = Decimal(record["balance"]) - total
    if total <= 0 or left < 0:
        return invoice
    currency = invoice["currency"]
    draw = {"id": f"draw:{invoice['id']}", "kind": "draw", "amount": invoice["total"],
            "invoice_id": invoice["id"], "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)}
    tx.put(key(contract["id"]), {**record, "balance": rating.format_money(left, currency),
                                 "movements": [*record["movements"], draw]})
    payment = {"payment_id": f"prepaid:{invoice['id']}", "amount": invoice["total"],
               "paid_at": format_ts(tx.timestamp), "source": "prepaid", "tx_id": tx.tx_id}
    return {**invoice, "payments": [payment], "paid": invoice["total"], "status": SETTLED,
            "settled_by": "prepaid",
            "history": [*invoice["history"], history_entry(SETTLED, tx.tx_id, tx.timestamp)]}
