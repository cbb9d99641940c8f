"""`RefundPrepaid`: the unused prepaid balance of an ENDED contract goes back to the customer as a credit
note (ADR 0051).

The credit note `cn-inv-{contract}-prepaid-refund` refers to the contract's last invoice (`credit_for`); its
one line is the balance split into net and tax at that invoice's rate, as any partial credit note (the balance
paid invoices tax included). The balance drops to zero with a `refund` movement naming the credit note. The
provider issues it (the hub's job does so for every ENDED contract with a balance left, and operators can
call it); asked again, it returns the same credit note and writes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chaincode import keys, rating
from chaincode.errors import ChaincodeError
from chaincode.model import ENDED, ISSUED, format_ts, history_entry, require_id
from chaincode.money import ZERO
from chaincode.tx import prepaid, running
from chaincode.tx.common import Tx
from chaincode.tx.settlement import _credit_amounts


def credit_note_id(contract_id: str) -> str:
    return f"cn-inv-{contract_id}-prepaid-refund"


def refund(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    contract = tx.contract(require_id(body, "contract_id"))
    if tx.creator != contract["provider"]:
        raise ChaincodeError("forbidden", f"only the provider {contract['provider']} refunds a prepaid "
                             "balance", msp_id=tx.creator)
    cn_id = credit_note_id(contract["id"])
    existing = tx.get(keys.invoice(cn_id))
    if existing is not None:
        return existing
    if contract["status"] != ENDED:
        raise ChaincodeError("contract_not_ended", f"contract {contract['id']} is {contract['status']}: the "
                             "balance is refunded once the contract has ended", status=contract["status"])
    record = tx.get(prepaid.key(contract["id"]))
    balance = Decimal(record["balance"]) if record else ZERO
    if balance <= 0:
        raise ChaincodeError("nothing_to_refund", f"contract {contract['id']} has no prepaid balance left")
    if any(not run.get("closed_by") for _, run in tx.scan(running.RUNNING, [contract["id"]])):
        raise ChaincodeError("period_not_closed", "a period with usage drawn from the balance is not closed")
    last = contract.get("last_closed_period")
    invoice = tx.get(keys.invoice(keys.invoice_id(contract["id"], last))) if last else None
    if invoice is None:
        raise ChaincodeError("period_not_closed", f"contract {contract['id']} has no closed period")
    currency = contract["currency"]
    # always the one-line partial form: the balance is not a copy of the last invoice's lines
    lines, subtotal, tax, total = _credit_amounts({**invoice, "total": "-1"}, balance)
    lines = [{**line, "charge_id": "prepaid_refund"} for line in lines]
    note = {
        "id": cn_id, "type": "credit_note", "credit_for": invoice["id"],
        "reason": "unused prepaid balance refunded at contract end", "contract_id": contract["id"],
        "period": invoice["period"], "currency": currency, "provider": contract["provider"],
        "customer": contract["customer"], "erp": contract.get("erp"), "lines": lines, "subtotal": subtotal,
        "tax": tax, "total": total, "tax_rate": invoice.get("tax_rate"),
        "tax_category": invoice.get("tax_category"), "readings": 0,
        "readings_digest": rating.digest_hex(0), "status": ISSUED, "tx_id": tx.tx_id,
        "issued_at": format_ts(tx.timestamp), "erp_refs": [], "payments": [],
        "paid": rating.format_money(ZERO, currency), "credit_notes": [], "prepaid_refund": True,
        "history": [history_entry(ISSUED, tx.tx_id, tx.timestamp)],
    }
    parties = [contract["provider"], contract["customer"]]
    tx.put(keys.invoice(cn_id), note)
    tx.stub.set_key_endorsement(keys.invoice(cn_id), parties)
    prepaid.write_balance(tx, contract, record, ZERO, {
        "id": f"refund:{cn_id}", "kind": "refund", "amount": total, "credit_note_id": cn_id,
        "tx_id": tx.tx_id, "at": format_ts(tx.timestamp)})
    tx.event("CreditNoteIssued", {"invoice_id": invoice["id"], "credit_note_id": cn_id, "amount": total})
    return note
