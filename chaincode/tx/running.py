"""The running period of a prepaid or progressively billed contract (ADR 0051).

`RecordUsage` calls `on_batch` for every (contract, period) batch it writes. For a contract that has a
prepaid balance (`prepaid~{contract}`) or a `billing_threshold`, the period's merged aggregate so far is kept
in `running~{contract}~{period}` (so the cost to date is one rating of one stored aggregate, never a scan of
every batch), and the prepaid balance is drawn down to that cost in the same transaction:

    cost    = rate(plan, aggregate so far).total          (what closing now would invoice)
    target  = max(applied, min(cost, drawn + balance))    (never more than the balance, never below what
                                                            interim invoices already took)
    draw    = target - drawn                               (one `prepaiddraw~{contract}~{period}~{tx}` key)

A batch is written by exactly one transaction, so its draw happens once; a resent message is a duplicate and
writes no batch. The draw keys `prepaiddraw~{contract}~{period}~{seq}` are the balance history
(`GetPrepaid`'s `draws`, in the order they happened). Contracts with neither a
balance nor a threshold pay one extra read of an absent key per usage transaction and behave as before.

`running` record: `{"contract_id", "period", "usage": aggregate JSON, "drawn", "applied", "billed":
{"subtotal", "tax", "total", "readings", "lines"}, "interims": [invoice ids], "draws": n, "closed_by"?}`.
"""

from __future__ import annotations

import functools
from decimal import Decimal, localcontext
from typing import Any

from chaincode import keys, rating, terms
from chaincode.keys import create_composite_key
from chaincode.model import format_ts
from chaincode.money import EXACT, ZERO
from chaincode.tx.common import Tx

RUNNING = "running"
DRAW = "prepaiddraw"


def key(contract_id: str, period: str) -> str:
    return create_composite_key(RUNNING, [contract_id, period])


def draw_key(contract_id: str, period: str, seq: int) -> str:
    """The period's `seq`-th draw (1, 2, ...): key order is the order they happened in (the running
    record that numbers them is read and written by every drawing transaction, so two never share one)."""
    return create_composite_key(DRAW, [contract_id, period, f"{seq:09d}"])


def fresh(tx: Tx, contract: dict[str, Any], period: str, *, skip_tx: str | None = None) -> dict[str, Any]:
    """A running record built from the batches already on the ledger (when a contract is first funded or
    its first batch of a period arrives); `skip_tx` leaves out this transaction's own batch."""
    own = keys.usage_batch(contract["id"], period, skip_tx) if skip_tx else None
    batches = tx.scan(keys.USAGE_BATCH, [contract["id"], period])
    aggs = [rating.BatchAggregate.from_json(rec) for k, rec in batches if k != own]
    currency = contract["currency"]
    zero = rating.format_money(ZERO, currency)
    return {"contract_id": contract["id"], "period": period, "usage": rating.merge(aggs).to_json(),
            "drawn": zero, "applied": zero,
            "billed": {"subtotal": zero, "tax": zero, "total": zero, "readings": 0, "lines": []},
            "interims": []}


def put(tx: Tx, contract: dict[str, Any], record: dict[str, Any]) -> None:
    k = key(contract["id"], record["period"])
    tx.put(k, record)
    tx.stub.set_key_endorsement(k, [contract["provider"], contract["customer"]])


def on_batch(tx: Tx, contract: dict[str, Any], plan: rating.Plan, period: str,
             batch: rating.BatchAggregate) -> None:
    """The hook `RecordUsage` calls for each batch it writes (before writing it)."""
    from chaincode.tx import prepaid  # prepaid imports this module

    balance_record = tx.get(prepaid.key(contract["id"]))
    if balance_record is None and terms.billing_threshold(contract) is None:
        return
    record = tx.get(key(contract["id"], period)) or fresh(tx, contract, period, skip_tx=tx.tx_id)
    if record.get("closed_by"):  # the period's invoice is issued: nothing more is drawn or billed for it
        return
    merged = rating.merge([rating.BatchAggregate.from_json(record["usage"]), batch])
    record = {**record, "usage": merged.to_json()}
    if balance_record is not None:
        cost = rating.rate(plan, merged).total
        record = draw_to(tx, contract, record, balance_record, cost, readings=merged.readings)
    put(tx, contract, record)


def draw_to(tx: Tx, contract: dict[str, Any], record: dict[str, Any], balance_record: dict[str, Any],
            cost: Decimal, *, readings: int) -> dict[str, Any]:
    """Move the period's drawn amount towards `cost` as far as the balance allows; writes the balance and
    the draw key when something moved. Returns the updated running record (not yet written)."""
    from chaincode.tx import prepaid

    currency = contract["currency"]
    with localcontext(EXACT):
        drawn, applied = Decimal(record["drawn"]), Decimal(record["applied"])
        balance = Decimal(balance_record["balance"])
        target = max(applied, min(cost, drawn + balance))
        amount = target - drawn
        left = balance - amount
    if amount == 0:
        return record
    period = record["period"]
    money = functools.partial(rating.format_money, currency=currency)
    seq = int(record.get("draws", 0)) + 1
    tx.put(draw_key(contract["id"], period, seq), {
        "contract_id": contract["id"], "period": period, "seq": seq, "tx_id": tx.tx_id,
        "at": format_ts(tx.timestamp),
        "amount": money(amount), "cost_to_date": money(cost), "drawn_to_date": money(target),
        "balance": money(left), "readings_to_date": readings})
    prepaid.write_balance(tx, contract, balance_record, left)
    return {**record, "drawn": money(target), "draws": seq}
