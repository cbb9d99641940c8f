"""The billing contract's entry point: `invoke(stub, fn, args) -> bytes`.

Every function takes one JSON object and returns canonical JSON (docs/chaincode.md). The functions live in
`chaincode.tx.*`, one module per subject; this module only dispatches, so the list of what the ledger
accepts is in one place. A refusal is a `ChaincodeError`; the ledger layers turn it into a failed response
and apply no writes (the functions themselves validate before they write wherever they can).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chaincode.errors import ChaincodeError
from chaincode.model import canonical, parse_argument
from chaincode.stub import Stub
from chaincode.tx import assets, contracts, invoices, settlement, usage
from chaincode.tx.common import Tx

Handler = Callable[[Tx, dict[str, Any]], Any]

TRANSACTIONS: dict[str, Handler] = {
    "RegisterAsset": assets.register_asset,
    "ProposeContract": contracts.propose_contract,
    "AcceptContract": contracts.accept_contract,
    "RecordUsage": usage.record_usage,
    "CloseBillingPeriod": invoices.close_billing_period,
    "RecordErpPosting": settlement.record_erp_posting,
    "RecordPayment": settlement.record_payment,
    "Dispute": settlement.dispute,
    "IssueCreditNote": settlement.issue_credit_note,
}

QUERIES: dict[str, Handler] = {
    "GetAsset": assets.get_asset,
    "GetContract": contracts.get_contract,
    "GetInvoice": invoices.get_invoice,
    "ListInvoices": invoices.list_invoices,
    "GetPeriod": invoices.get_period,
    "GetUsage": invoices.get_usage,
    "GetReadings": invoices.get_readings,
    "GetUsageMessage": invoices.get_usage_message,
}

FUNCTIONS: dict[str, Handler] = {**TRANSACTIONS, **QUERIES}


def invoke(stub: Stub, fn: str, args: Sequence[bytes | str]) -> bytes:
    """Run `fn` with its one JSON argument on `stub`; canonical JSON answer or `ChaincodeError`."""
    handler = FUNCTIONS.get(fn)
    if handler is None:
        raise ChaincodeError("unknown_function", f"unknown function {fn!r}", function=fn)
    body = parse_argument(args)
    return canonical(handler(Tx(stub), body))
