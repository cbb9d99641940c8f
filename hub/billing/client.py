"""`ContractClient`: the one typed way for the hub to call the billing chaincode (ADR 0061).

In the spirit of fabric-gateway's `Contract`: one method per chaincode function the hub uses, each taking
the function's arguments as Python values and returning the typed answer of `hub.billing.answers` (a
transaction's answer carries its `commit`). Underneath, every call is the same small step:

    body -> compact JSON -> Ledger.evaluate/submit as the mapped org (timed, metered) -> JSON -> model

- Refusals stay `ChaincodeRejected` (hub.ledger.base) with the chaincode's code; other ledger failures
  are the ledger's own `LedgerError`s; an answer the models do not describe is `AnswerShapeError`.
- Org mapping (`OrgMapping`): orgs without a ledger identity (an operator's org, a device's gateway) act
  as the provider org; `read_as_hub` asks as each org this hub holds an identity for until one may read.
- Ids the chaincode assigns are named here, once (`invoice_id`, `interim_invoice_id`,
  `credit_note_id`, `prepaid_refund_id`), from `chaincode.keys`, so no caller builds them.
- `evaluate`/`submit`/`read_as_hub` keep `LedgerGateway`'s signatures (JSON in, JSON out), so the gateway
  can delegate to a client and routers keep working while they move to the typed methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from chaincode import keys
from chaincode.tx import prepaid_refund, progressive
from hub.billing import answers as a
from hub.errors import WrongHubOrg
from hub.ledger.base import ChaincodeRejected, Commit, Ledger, LedgerError

T = TypeVar("T", bound=a.Answer)
Amount = Decimal | str


class LedgerMetrics(Protocol):
    """What the client records (hub.services.Metrics has both): latency by kind and function, errors by
    exception class."""

    ledger_latency: Any
    ledger_errors: Any


def dumps(value: Any) -> str:
    """Compact JSON for a chaincode argument; Decimal amounts as their exact decimal text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OrgMapping:
    """The hub's orgs -> the org whose ledger identity acts.

    All-orgs hub (`org` None, the embedded default): orgs without a ledger identity (an operator's org, a
    device's gateway) act as the provider org, whose hub runs them (the chaincode still authorises every
    call by org); an org that joined the network later (ADR 0054) acts as itself once the ledger holds an
    identity for it.

    One hub per org (`org` set, ADR 0065): every call acts as that org and only that org; a call for any
    other org is refused with `WrongHubOrg` (403 `wrong_hub_org`), never made as someone else."""

    def __init__(self, provider_org: str, customer_org: str, auditor_org: str, *,
                 extra: Iterable[str] = (), ledger: Ledger | None = None, org: str | None = None) -> None:
        self.provider_org, self.customer_org, self.auditor_org = provider_org, customer_org, auditor_org
        self.org = org
        self.known = frozenset({org}) if org is not None else \
            frozenset({provider_org, customer_org, auditor_org, *extra})
        self.ledger = ledger

    @classmethod
    def from_settings(cls, settings: Any, ledger: Ledger | None = None) -> OrgMapping:
        return cls(settings.provider_org, settings.customer_org, settings.auditor_org,
                   extra=settings.extra_ledger_orgs, ledger=ledger, org=settings.org)

    @property
    def hub_orgs(self) -> tuple[str, ...]:
        """The orgs this hub holds identities for, in the order `read_as_hub` asks them."""
        if self.org is not None:
            return (self.org,)
        return self.provider_org, self.customer_org, self.auditor_org

    def __call__(self, org: str) -> str:
        if self.org is not None:
            if org != self.org:
                raise WrongHubOrg(detail=f"this hub acts for {self.org} only, not for {org}")
            return org
        if org in self.known or self._ledger_has_identity(org):
            return org
        return self.provider_org

    def _ledger_has_identity(self, org: str) -> bool:
        identity = getattr(self.ledger, "identity", None)  # FabricLedger: one identity per org it acts for
        if identity is None:
            return False
        try:
            identity(org)
        except LedgerError:  # "no identity for org": it acts as the provider org
            return False
        return True


class ContractClient:
    """Typed calls of the billing chaincode on one `Ledger` (embedded or Fabric)."""

    def __init__(self, ledger: Ledger, *, orgs: OrgMapping | None = None,
                 metrics: LedgerMetrics | None = None) -> None:
        self.ledger = ledger
        self.orgs = orgs
        self.metrics = metrics

    @classmethod
    def of(cls, source: Any) -> ContractClient:
        """The client behind `source`: a ContractClient itself, anything holding one as `.client`, a
        `LedgerGateway` (same ledger, org mapping and metrics), or a bare `Ledger` (no mapping, no metrics:
        each call acts as exactly the org it names)."""
        if isinstance(source, ContractClient):
            return source
        held = getattr(source, "client", None)
        if isinstance(held, ContractClient):
            return held
        if callable(getattr(source, "ledger_org", None)) and hasattr(source, "ledger") \
                and hasattr(source, "settings") and hasattr(source, "metrics"):
            return cls(source.ledger, orgs=OrgMapping.from_settings(source.settings, source.ledger),
                       metrics=source.metrics)
        return cls(source)

    # --- ids the chaincode assigns ---------------------------------------------------------------------

    @staticmethod
    def invoice_id(contract_id: str, period: str) -> str:
        """The id `CloseBillingPeriod` gives the invoice of (contract, period)."""
        return keys.invoice_id(contract_id, period)

    @staticmethod
    def interim_invoice_id(contract_id: str, period: str, n: int) -> str:
        """The id of the n-th interim invoice of a period (`IssueInterimInvoice`, ADR 0051)."""
        return progressive.interim_id(contract_id, period, n)

    @staticmethod
    def credit_note_id(invoice_id: str, n: int) -> str:
        """The id of the n-th credit note `IssueCreditNote` writes for an invoice."""
        return keys.credit_note_id(invoice_id, n)

    @staticmethod
    def prepaid_refund_id(contract_id: str) -> str:
        """The id of the credit note `RefundPrepaid` writes for a contract."""
        return prepaid_refund.credit_note_id(contract_id)

    # --- the one step every call takes (LedgerGateway's evaluate/submit/read_as_hub) -------------------

    def ledger_org(self, org: str) -> str:
        return org if self.orgs is None else self.orgs(org)

    def evaluate(self, fn: str, arg: Mapping[str, Any], *, as_org: str) -> Any:
        """A query; its JSON answer (None for an empty one)."""
        raw = self._timed("evaluate", fn, lambda: self.ledger.evaluate(
            fn, [dumps(arg)], as_org=self.ledger_org(as_org)))
        return json.loads(raw) if raw else None

    def submit(self, fn: str, arg: Mapping[str, Any], *, as_org: str) -> tuple[Commit, Any]:
        """A transaction, committed; where it landed and its JSON answer."""
        commit = self._timed("submit", fn, lambda: self.ledger.submit(
            fn, [dumps(arg)], as_org=self.ledger_org(as_org)))
        return commit, (json.loads(commit.payload) if commit.payload else None)

    def read_as_hub(self, fn: str, arg: Mapping[str, Any]) -> Any:
        """A query for the hub's own bookkeeping, not for a caller: asked as each org this hub holds an
        identity for, until one may read it (the chaincode answers `forbidden` to a non-party)."""
        if self.orgs is None:
            raise LedgerError("read_as_hub needs the hub's orgs (ContractClient(orgs=OrgMapping(...)))")
        last: ChaincodeRejected | None = None
        for org in self.orgs.hub_orgs:
            try:
                return self.evaluate(fn, arg, as_org=org)
            except ChaincodeRejected as exc:
                if exc.code != "forbidden":
                    raise
                last = exc
        assert last is not None
        raise last

    def _timed(self, kind: str, fn: str, call: Callable[[], Any]) -> Any:
        if self.metrics is None:
            return call()
        started = time.perf_counter()
        try:
            return call()
        except Exception as exc:
            self.metrics.ledger_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self.metrics.ledger_latency.labels(kind, fn).observe(time.perf_counter() - started)

    def _query(self, model: type[T], fn: str, arg: Mapping[str, Any], as_org: str | None) -> T:
        answer = self.read_as_hub(fn, arg) if as_org is None else self.evaluate(fn, arg, as_org=as_org)
        return model.from_raw(answer)

    def _tx(self, model: type[T], fn: str, arg: Mapping[str, Any], as_org: str) -> T:
        commit, answer = self.submit(fn, arg, as_org=as_org)
        return model.from_raw(answer, commit)

    # --- assets and contracts ------------------------------------------------------------------------
    # Queries take `as_org`: the org asking (mapped like every call), or None for the hub's own reads.

    def register_asset(self, asset: Mapping[str, Any], *, as_org: str) -> a.Asset:
        return self._tx(a.Asset, "RegisterAsset", asset, as_org)

    def propose_contract(self, contract: Mapping[str, Any], *, as_org: str) -> a.Contract:
        return self._tx(a.Contract, "ProposeContract", contract, as_org)

    def accept_contract(self, contract_id: str, *, as_org: str) -> a.Contract:
        return self._tx(a.Contract, "AcceptContract", {"contract_id": contract_id}, as_org)

    def get_asset(self, asset_id: str, *, as_org: str | None) -> a.Asset:
        return self._query(a.Asset, "GetAsset", {"id": asset_id}, as_org)

    def get_contract(self, contract_id: str, *, as_org: str | None) -> a.Contract:
        return self._query(a.Contract, "GetContract", {"id": contract_id}, as_org)

    def list_contracts(self, party: str, *, as_org: str | None) -> a.ContractList:
        """Every contract `party` is provider or customer of (the network's `remove-org` check)."""
        return self._query(a.ContractList, "ListContracts", {"party": party}, as_org)

    # --- usage -----------------------------------------------------------------------------------------

    def record_usage(self, messages: Sequence[Mapping[str, Any]], *, as_org: str) -> a.UsageRecorded:
        return self._tx(a.UsageRecorded, "RecordUsage", {"messages": list(messages)}, as_org)

    def get_usage(self, contract_id: str, period: str, *, as_org: str | None) -> a.Usage:
        return self._query(a.Usage, "GetUsage", {"contract_id": contract_id, "period": period}, as_org)

    def get_readings(self, contract_id: str, period: str, *, as_org: str | None) -> a.Readings:
        return self._query(a.Readings, "GetReadings", {"contract_id": contract_id, "period": period}, as_org)

    def get_late_readings(self, contract_id: str, period: str, *, as_org: str | None) -> a.Readings:
        """The late readings billed in `period` (ADR 0048)."""
        arg = {"contract_id": contract_id, "period": period}
        return self._query(a.Readings, "GetLateReadings", arg, as_org)

    def get_usage_message(self, device_id: str, message_id: str, *, as_org: str | None) -> a.UsageMessage:
        arg = {"device_id": device_id, "message_id": message_id}
        return self._query(a.UsageMessage, "GetUsageMessage", arg, as_org)

    # --- periods and invoices -----------------------------------------------------------------------

    def close_billing_period(self, contract_id: str, period: str, *, as_org: str) -> a.Invoice:
        """The period's invoice; a repeat close answers the same invoice in a no-op transaction."""
        arg = {"contract_id": contract_id, "period": period}
        return self._tx(a.Invoice, "CloseBillingPeriod", arg, as_org)

    def preview_invoice(self, contract_id: str, period: str, *, as_org: str | None) -> a.Preview:
        arg = {"contract_id": contract_id, "period": period}
        return self._query(a.Preview, "PreviewInvoice", arg, as_org)

    def get_period(self, contract_id: str, period: str, *, as_org: str | None) -> a.Period:
        return self._query(a.Period, "GetPeriod", {"contract_id": contract_id, "period": period}, as_org)

    def get_invoice(self, invoice_id: str, *, as_org: str | None) -> a.Invoice:
        """An invoice or a credit note."""
        return self._query(a.Invoice, "GetInvoice", {"id": invoice_id}, as_org)

    def list_invoices(self, *, contract_id: str | None = None, status: str | None = None,
                      as_org: str | None) -> a.InvoiceList:
        arg = {k: v for k, v in (("contract_id", contract_id), ("status", status)) if v is not None}
        return self._query(a.InvoiceList, "ListInvoices", arg, as_org)

    def issue_interim_invoice(self, contract_id: str, period: str, *, as_org: str) -> a.Invoice:
        arg = {"contract_id": contract_id, "period": period}
        return self._tx(a.Invoice, "IssueInterimInvoice", arg, as_org)

    # --- settlement ----------------------------------------------------------------------------------

    def record_erp_posting(self, invoice_id: str, *, target: str, system: str, document_id: str,
                           delivery_id: str | None, as_org: str) -> a.Invoice:
        arg = {"invoice_id": invoice_id, "target": target, "system": system, "document_id": document_id,
               "delivery_id": delivery_id}
        return self._tx(a.Invoice, "RecordErpPosting", arg, as_org)

    def record_payment(self, invoice_id: str, *, payment_id: str, amount: Amount, as_org: str,
                       paid_at: str | None = None, source: str | None = None,
                       accept_overpayment: bool = False) -> a.Invoice:
        arg: dict[str, Any] = {"invoice_id": invoice_id, "payment_id": payment_id, "amount": str(amount)}
        if paid_at is not None:
            arg["paid_at"] = paid_at
        if source is not None:
            arg["source"] = source
        if accept_overpayment:
            arg["accept_overpayment"] = True
        return self._tx(a.Invoice, "RecordPayment", arg, as_org)

    def reverse_payment(self, invoice_id: str, *, payment_id: str, reversal_id: str, reason: str,
                        as_org: str) -> a.Invoice:
        arg = {"invoice_id": invoice_id, "payment_id": payment_id, "reversal_id": reversal_id,
               "reason": reason}
        return self._tx(a.Invoice, "ReversePayment", arg, as_org)

    def dispute(self, invoice_id: str, *, reason: str, as_org: str) -> a.Invoice:
        return self._tx(a.Invoice, "Dispute", {"invoice_id": invoice_id, "reason": reason}, as_org)

    def issue_credit_note(self, invoice_id: str, *, reason: str, as_org: str,
                          amount: Amount | None = None) -> a.Invoice:
        """The credit note (its `id`, `credit_for` the invoice); default amount: the invoice's total."""
        arg: dict[str, Any] = {"invoice_id": invoice_id, "reason": reason}
        if amount is not None:
            arg["amount"] = str(amount)
        return self._tx(a.Invoice, "IssueCreditNote", arg, as_org)

    # --- prepaid and progressive billing (ADR 0043, 0051) --------------------------------------------

    def top_up_prepaid(self, contract_id: str, *, top_up_id: str, amount: Amount, as_org: str,
                       source: str | None = None, evidence: Any = None) -> a.Prepaid:
        arg: dict[str, Any] = {"contract_id": contract_id, "top_up_id": top_up_id, "amount": str(amount)}
        if source is not None:
            arg["source"] = source
        if evidence is not None:
            arg["evidence"] = evidence
        return self._tx(a.Prepaid, "TopUpPrepaid", arg, as_org)

    def reverse_top_up(self, contract_id: str, *, top_up_id: str, reversal_id: str, reason: str,
                       as_org: str) -> a.Prepaid:
        arg = {"contract_id": contract_id, "top_up_id": top_up_id, "reversal_id": reversal_id,
               "reason": reason}
        return self._tx(a.Prepaid, "ReverseTopUp", arg, as_org)

    def refund_prepaid(self, contract_id: str, *, as_org: str) -> a.Invoice:
        """The refund credit note (`prepaid_refund_id(contract_id)`)."""
        return self._tx(a.Invoice, "RefundPrepaid", {"contract_id": contract_id}, as_org)

    def get_prepaid(self, contract_id: str, *, as_org: str | None) -> a.Prepaid:
        return self._query(a.Prepaid, "GetPrepaid", {"contract_id": contract_id}, as_org)

    def get_running(self, contract_id: str, *, as_org: str | None) -> a.RunningPeriods:
        """Every period of the contract not yet invoiced."""
        return self._query(a.RunningPeriods, "GetRunning", {"contract_id": contract_id}, as_org)

    def get_running_period(self, contract_id: str, period: str, *, as_org: str | None) -> a.RunningPeriod:
        arg = {"contract_id": contract_id, "period": period}
        return self._query(a.RunningPeriod, "GetRunning", arg, as_org)

    # --- amendments (ADR 0046) -----------------------------------------------------------------------

    def propose_amendment(self, contract_id: str, amendment_id: str, *, as_org: str,
                          effective_from: str | None = None, plan: Mapping[str, Any] | None = None,
                          end: str | None = None, note: str | None = None) -> a.Amendment:
        """A plan change (`effective_from` + `plan`) or an agreed end (`end`)."""
        arg: dict[str, Any] = {"contract_id": contract_id, "id": amendment_id}
        for k, v in (("effective_from", effective_from), ("plan", plan), ("end", end), ("note", note)):
            if v is not None:
                arg[k] = v
        return self._tx(a.Amendment, "ProposeAmendment", arg, as_org)

    def accept_amendment(self, contract_id: str, amendment_id: str, *, as_org: str) -> a.Amendment:
        arg = {"contract_id": contract_id, "amendment_id": amendment_id}
        return self._tx(a.Amendment, "AcceptAmendment", arg, as_org)

    def reject_amendment(self, contract_id: str, amendment_id: str, *, as_org: str,
                         reason: str | None = None) -> a.Amendment:
        arg: dict[str, Any] = {"contract_id": contract_id, "amendment_id": amendment_id}
        if reason is not None:
            arg["reason"] = reason
        return self._tx(a.Amendment, "RejectAmendment", arg, as_org)

    def get_amendment(self, contract_id: str, amendment_id: str, *, as_org: str | None) -> a.Amendment:
        arg = {"contract_id": contract_id, "amendment_id": amendment_id}
        return self._query(a.Amendment, "GetAmendment", arg, as_org)

    def get_contract_history(self, contract_id: str, *, as_org: str | None) -> a.ContractHistory:
        return self._query(a.ContractHistory, "GetContractHistory", {"contract_id": contract_id}, as_org)

    # --- bookings of shared assets (ADR 0049) -------------------------------------------------------

    def propose_booking(self, asset_id: str, booking_id: str, *, contract_id: str, start: str, end: str,
                        as_org: str) -> a.Booking:
        arg = {"asset_id": asset_id, "id": booking_id, "contract_id": contract_id, "start": start, "end": end}
        return self._tx(a.Booking, "ProposeBooking", arg, as_org)

    def accept_booking(self, asset_id: str, booking_id: str, *, as_org: str) -> a.Booking:
        return self._tx(a.Booking, "AcceptBooking", {"asset_id": asset_id, "id": booking_id}, as_org)

    def get_booking(self, asset_id: str, booking_id: str, *, as_org: str | None) -> a.Booking:
        return self._query(a.Booking, "GetBooking", {"asset_id": asset_id, "id": booking_id}, as_org)

    def list_bookings(self, asset_id: str, *, as_org: str | None) -> a.BookingList:
        return self._query(a.BookingList, "ListBookings", {"asset_id": asset_id}, as_org)
