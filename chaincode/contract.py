"""The billing contract's entry point: `invoke(stub, fn, args) -> bytes`.

Every function takes one JSON object and returns canonical JSON (docs/chaincode.md). The functions live in
`chaincode.tx.*`, one module per subject; this module only dispatches, so the list of what the ledger
accepts is in one place. A refusal is a `ChaincodeError`; the ledger layers turn it into a failed response
and apply no writes (the functions themselves validate before they write wherever they can).

Answers (canonical JSON), beyond what docs/chaincode.md fixes:

- `RegisterAsset`, `GetAsset`: the asset record. `ProposeContract`, `AcceptContract`, `GetContract`: the
  contract record. A repeated identical `RegisterAsset` / `ProposeContract` / `AcceptContract` returns the
  stored record and writes nothing.
- `RecordUsage`: `{"results": [...], "accepted": n, "tx_id"}`, one result per message in order, each
  `{"message_id", "device_id", "status", "accepted", "duplicates"}`; a rejected result's `error` is
  `{"code", "message", "reading_ids", ...}` and, for reading-level problems, `"readings": [{"reading_id",
  "code", "message"}]` listing every bad reading. A transaction in which every message is rejected
  succeeds, writes nothing and sets no event. Extra codes: `message_conflict` (a message id reused with
  other content), `reading_conflict` (a (device, reading id) already recorded with other content; the
  same content is a duplicate), `invalid_plan` (a stored plan the current rating rules refuse).
- `CloseBillingPeriod`, `RecordErpPosting`, `RecordPayment`, `Dispute`, `GetInvoice`: the invoice record;
  `IssueCreditNote`: the credit note record. Replays return the stored record and write nothing.
  Invoice records also carry `provider`, `customer`, `erp`, `tax_rate`, `tax_category`, `credit_notes`,
  and after a dispute `dispute: {"reason", "tx_id", "at"}`. ERP refs are
  `{"target", "system", "document_id", "delivery_id", "tx_id", "at"}`; payments
  `{"payment_id", "amount", "paid_at", "source", "tx_id"}`.
- `ListInvoices`: `{"invoices": [...]}` in key order (credit notes included; filter on `type`).
- `GetPeriod`: `{"contract_id", "period", "status": "OPEN"|"CLOSED", "invoice_id"?, "closed_tx"?}`.
- `GetUsage`: `{"contract_id", "period", "status", "as_of", "aggregate": BatchAggregate JSON,
  "cost": {"currency", "lines", "subtotal", "tax", "total", "tax_rate", "tax_category", "readings",
  "readings_digest"}}`: `cost` is exactly what closing at this moment would invoice.
- `GetReadings`: `{"contract_id", "period", "readings": [reading records in key order]}`.
- `GetUsageMessage`: the message as recorded (`unknown_message` when absent).

Queries do not authorise: the hub decides what each role may see; the ledger serves every member org.
Contract states: PROPOSED -> ACTIVE -> ENDED (closing the period that contains the contract's end).

Endorser clock (ADR 0027): `invoke(..., clock_bound=ClockBound(...))` (or the `bounded(...)` callable the
hosts serve) refuses every *transaction* function whose proposal timestamp is further than the bound's
skew from the endorser's own clock, with `tx_timestamp_skew` (status 503) before the function runs, so a
refusal reads and writes nothing. Queries are not bounded: they write nothing, and their answer goes only
to the client that chose the timestamp. Plain `invoke` (no bound) is the pure, deterministic contract
that unit tests and replays of old transactions run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from chaincode import late
from chaincode.clock import ClockBound
from chaincode.errors import ChaincodeError
from chaincode.model import canonical, parse_argument
from chaincode.stub import Stub
from chaincode.tx import (
    amendments,
    assets,
    bookings,
    contracts,
    invoices,
    prepaid,
    prepaid_refund,
    progressive,
    settlement,
    usage,
    versioned,
)
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
    "ReversePayment": settlement.reverse_payment,
    "TopUpPrepaid": prepaid.top_up,
    "ReverseTopUp": prepaid.reverse_top_up,
    "RefundPrepaid": prepaid_refund.refund,
    "IssueInterimInvoice": progressive.issue_interim,
    "Dispute": settlement.dispute,
    "IssueCreditNote": settlement.issue_credit_note,
    # amendments (ADR 0046)
    "ProposeAmendment": amendments.propose_amendment,
    "AcceptAmendment": amendments.accept_amendment,
    "RejectAmendment": amendments.reject_amendment,
    "ProposeBooking": bookings.propose_booking,
    "AcceptBooking": bookings.accept_booking,
}

QUERIES: dict[str, Handler] = {
    "GetAsset": assets.get_asset,
    "GetContract": contracts.get_contract,
    "GetInvoice": invoices.get_invoice,
    "GetPrepaid": prepaid.get,
    "GetRunning": progressive.get_running,
    "ListInvoices": invoices.list_invoices,
    "GetPeriod": invoices.get_period,
    "GetUsage": invoices.get_usage,
    "GetReadings": invoices.get_readings,
    "GetUsageMessage": invoices.get_usage_message,
    "GetAmendment": amendments.get_amendment,
    "GetContractHistory": amendments.get_contract_history,
    "PreviewInvoice": versioned.preview_invoice,  # ADR 0047
    "GetBooking": bookings.get_booking,
    "ListBookings": bookings.list_bookings,
    "ListContracts": contracts.list_contracts,  # ADR 0063
    "GetLateReadings": late.get_late_readings,
}

FUNCTIONS: dict[str, Handler] = {**TRANSACTIONS, **QUERIES}


Invoke = Callable[[Stub, str, Sequence[bytes | str]], bytes]


def invoke(
    stub: Stub, fn: str, args: Sequence[bytes | str], *, clock_bound: ClockBound | None = None
) -> bytes:
    """Run `fn` with its one JSON argument on `stub`; canonical JSON answer or `ChaincodeError`.
    With `clock_bound`, a transaction function first checks the proposal timestamp against it."""
    handler = FUNCTIONS.get(fn)
    if handler is None:
        raise ChaincodeError("unknown_function", f"unknown function {fn!r}", function=fn)
    if clock_bound is not None and fn in TRANSACTIONS:
        clock_bound.check(stub.tx_timestamp(), fn)
    body = parse_argument(args)
    return canonical(handler(Tx(stub), body))


def bounded(clock_bound: ClockBound | None) -> Invoke:
    """The contract as an endorsing host serves it: `invoke` with this endorser's clock bound."""
    return functools.partial(invoke, clock_bound=clock_bound)
