"""The chaincode's answers as typed values (docs/chaincode.md, the docstring of `chaincode/contract.py`).

Each answer is a frozen dataclass whose fields are the keys of the chaincode's JSON answer, with money as
`Decimal` (exact, as the chaincode formatted it), counts as `int` and nested records typed where the hub
reads them. `raw` keeps the JSON object exactly as the ledger answered, so nothing is lost: a key the
model does not name (a contract's own proposed fields, an invoice line) is still there, and callers that
hand the record on (read models, proofs, e-invoices) pass `raw`, never a re-serialised copy. A
transaction's answer also carries `commit` (where it landed: tx id, block).

Reading is strict about what the hub relies on and lenient about the rest: a missing required key raises
`AnswerShapeError` (the chaincode and the hub disagree: a bug, not a business refusal), an unknown key is
kept in `raw`. `unmodelled(raw)` lists keys a model does not name; the answer-shape test runs the real
chaincode and fails when an answer gains or loses a key, so this file and docs/chaincode.md follow it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from hub.ledger.base import Commit, LedgerError

A = TypeVar("A", bound="Answer")
JSON = Any


class AnswerShapeError(LedgerError):
    """The chaincode answered something the hub's model of it does not describe (a missing key, a key of
    the wrong type): the chaincode and this module disagree. Not retryable."""

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(f"{model}: {problem}")
        self.model = model
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.model, self.problem)


@dataclass(frozen=True, kw_only=True)
class Answer:
    """Base of every typed answer: `raw` is the JSON object as answered, `commit` set for transactions."""

    raw: Mapping[str, JSON] = field(repr=False, compare=False)
    commit: Commit | None = field(default=None, repr=False, compare=False)

    # keys the chaincode may add that belong to the caller's own document (a contract's proposed fields)
    OPEN: ClassVar[bool] = False

    @classmethod
    def from_raw(cls: type[A], raw: Mapping[str, JSON], commit: Commit | None = None) -> A:
        if not isinstance(raw, Mapping):
            raise AnswerShapeError(cls.__name__, f"expected a JSON object, got {type(raw).__name__}")
        values: dict[str, Any] = {}
        for f in _fields(cls):
            if f.name in raw:
                values[f.name] = _convert(cls.__name__, f.name, _hints(cls)[f.name], raw[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise AnswerShapeError(cls.__name__, f"missing key {f.name!r}")
        return cls(raw=raw, commit=commit, **values)

    @classmethod
    def required_keys(cls) -> frozenset[str]:
        return frozenset(f.name for f in _fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)

    @classmethod
    def known_keys(cls) -> frozenset[str]:
        return frozenset(f.name for f in _fields(cls))

    @classmethod
    def unmodelled(cls, raw: Mapping[str, JSON]) -> frozenset[str]:
        """Keys of `raw` this model does not name (kept in `.raw`, but nobody typed them)."""
        return frozenset(raw) - cls.known_keys()


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.name not in ("raw", "commit"))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def money(value: JSON) -> Decimal:
    """A money amount or exact decimal as the chaincode writes it (a decimal string)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a decimal string, got {value!r}")
    return Decimal(str(value))


def _convert(model: str, key: str, hint: Any, value: JSON) -> Any:
    try:
        return _to(hint, value)
    except AnswerShapeError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise AnswerShapeError(model, f"key {key!r}: {exc}") from None


def _to(hint: Any, value: JSON) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            if len(options) == len(get_args(hint)):
                raise ValueError("null where a value is required")
            return None
        return _to(options[0], value)
    if hint is Decimal:
        return money(value)
    if hint is Any:
        return value
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return tuple(_to(item, v) for v in value)
    if isinstance(hint, type) and issubclass(hint, Answer):
        return hint.from_raw(value)
    if (origin is not None and issubclass(origin, Mapping)) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    raise TypeError(f"no conversion for {hint!r}")  # pragma: no cover - a model bug


Obj = Mapping[str, Any]


# --- assets and contracts ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Asset(Answer):
    id: str
    description: str
    public_key: str
    provider: str
    contract_id: str | None
    registered_tx: str
    shared: bool = False


@dataclass(frozen=True, kw_only=True)
class Contract(Answer):
    """`contract~{id}`: the contract as proposed (API.md; its own fields stay in `raw`) plus the ledger's."""

    OPEN: ClassVar[bool] = True

    id: str
    provider: str
    customer: str
    assets: tuple[str, ...]
    currency: str
    timezone: str
    start: str
    status: str
    proposed_tx: str
    end: str | None = None
    accepted_tx: str | None = None
    accepted_at: str | None = None
    reading_key_version: int = 1  # records of an earlier chaincode lack it (layout 1, ADR 0026)
    last_closed_period: str | None = None
    plan_version: int | None = None
    versions: tuple[Obj, ...] = ()
    ended_by: Obj | None = None  # {"amendment_id", "end", "at", "accepted_tx"}
    billing_threshold: Decimal | None = None
    prepaid: Obj | None = None


@dataclass(frozen=True, kw_only=True)
class ContractSummary(Answer):
    id: str
    status: str
    provider: str
    customer: str


@dataclass(frozen=True, kw_only=True)
class ContractList(Answer):
    """`ListContracts {"party"}`: every contract the org is provider or customer of (ADR 0063)."""

    contracts: tuple[ContractSummary, ...]


# --- usage ------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MessageResult(Answer):
    message_id: str | None  # null when the message did not name one (the chaincode rejects it)
    device_id: str | None
    status: str  # "accepted" | "rejected"
    accepted: int
    duplicates: tuple[str, ...]
    error: Obj | None = None  # {"code", "message", "reading_ids", "readings"?, ...}

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else str(self.error.get("code"))


@dataclass(frozen=True, kw_only=True)
class UsageRecorded(Answer):
    results: tuple[MessageResult, ...]
    accepted: int
    tx_id: str


@dataclass(frozen=True, kw_only=True)
class Cost(Answer):
    """What closing now would invoice (`GetUsage`'s `cost`)."""

    currency: str
    lines: tuple[Obj, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    tax_rate: Decimal | None
    tax_category: str | None
    readings: int
    readings_digest: str
    plan_versions: tuple[int, ...] = ()  # amended contracts (ADR 0046)
    segments: tuple[Obj, ...] = ()
    late_readings: int | None = None  # late usage billed in this period (ADR 0048)
    late_readings_digest: str | None = None


@dataclass(frozen=True, kw_only=True)
class Usage(Answer):
    contract_id: str
    period: str
    status: str
    as_of: str
    aggregate: Obj
    cost: Cost


@dataclass(frozen=True, kw_only=True)
class Readings(Answer):
    contract_id: str
    period: str
    readings: tuple[Obj, ...]


@dataclass(frozen=True, kw_only=True)
class UsageMessage(Answer):
    device_id: str
    message_id: str
    readings: tuple[Obj, ...]
    signature: str


# --- invoices ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ErpRef(Answer):
    target: str
    system: str
    document_id: str
    delivery_id: str | None
    tx_id: str
    at: str


@dataclass(frozen=True, kw_only=True)
class Payment(Answer):
    payment_id: str
    amount: Decimal
    paid_at: str | None
    source: str | None
    tx_id: str
    reversal: Obj | None = None  # {"reversal_id", "reason", "tx_id", "at"} (ADR 0043)


@dataclass(frozen=True, kw_only=True)
class Invoice(Answer):
    """`invoice~{id}`: an invoice (`type` "invoice") or a credit note (`type` "credit_note")."""

    id: str
    type: str
    contract_id: str
    period: str
    currency: str
    status: str
    provider: str
    customer: str
    lines: tuple[Obj, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    paid: Decimal
    readings: int
    readings_digest: str
    issued_at: str
    tx_id: str
    erp_refs: tuple[ErpRef, ...] = ()
    payments: tuple[Payment, ...] = ()
    history: tuple[Obj, ...] = ()
    credit_notes: tuple[str, ...] = ()
    erp: Obj | None = None
    tax_rate: Decimal | None = None
    tax_category: str | None = None
    # settlement (ADR 0043, 0051)
    overpaid: Decimal | None = None
    settled_by: str | None = None
    dispute: Obj | None = None
    # credit notes
    credit_for: str | None = None
    reason: str | None = None
    prepaid_refund: bool = False
    # amendments (ADR 0046), late readings (ADR 0048)
    plan_versions: tuple[int, ...] = ()
    segments: tuple[Obj, ...] = ()
    late_readings: int | None = None
    late_readings_digest: str | None = None
    # progressive billing (ADR 0051): an interim invoice, a final invoice after interims
    kind: str | None = None
    sequence: int | None = None
    readings_to_date: int | None = None
    interim_invoices: tuple[str, ...] = ()
    deducted: Obj | None = None
    period_total: Obj | None = None

    @property
    def is_credit_note(self) -> bool:
        return self.type == "credit_note"

    def payment_ids(self) -> frozenset[str]:
        return frozenset(p.payment_id for p in self.payments)


@dataclass(frozen=True, kw_only=True)
class InvoiceList(Answer):
    invoices: tuple[Invoice, ...]


@dataclass(frozen=True, kw_only=True)
class Period(Answer):
    contract_id: str
    period: str
    status: str  # "OPEN" | "CLOSED"
    invoice_id: str | None = None
    closed_tx: str | None = None


@dataclass(frozen=True, kw_only=True)
class Preview(Answer):
    """`PreviewInvoice` (ADR 0047): the invoice closing would issue now (or the issued one, when CLOSED)."""

    contract_id: str
    period: str
    as_of: str
    status: str
    invoice: Invoice


# --- prepaid and progressive billing (ADR 0043, 0051) --------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Movement(Answer):
    id: str
    kind: str  # top_up | draw | release | top_up_reversal | refund
    amount: Decimal
    tx_id: str
    at: str
    invoice_id: str | None = None
    source: str | None = None
    evidence: Any = None
    top_up_id: str | None = None
    reason: str | None = None
    unrecovered: Decimal | None = None  # a top-up reversal: from_balance + from_open_periods + unrecovered
    from_balance: Decimal | None = None
    from_open_periods: Decimal | None = None
    credit_note_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Prepaid(Answer):
    """`prepaid~{contract}` (`GetPrepaid` adds `draws`); the answer of TopUpPrepaid and ReverseTopUp."""

    contract_id: str
    currency: str
    balance: Decimal
    movements: tuple[Movement, ...] = ()
    low: Obj | None = None  # {"id", "balance", "threshold", "at"}
    draws: tuple[Obj, ...] = ()

    def movement(self, movement_id: str) -> Movement | None:
        return next((m for m in self.movements if m.id == movement_id), None)


@dataclass(frozen=True, kw_only=True)
class RunningPeriod(Answer):
    contract_id: str
    period: str
    running: Obj | None
    billing_threshold: Decimal | None
    interim_due: bool
    cost_to_date: Decimal | None = None
    unbilled: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class RunningPeriods(Answer):
    """`GetRunning` without a period: every period not yet invoiced."""

    contract_id: str
    periods: tuple[RunningPeriod, ...]


# --- amendments and bookings (ADR 0046, 0049) ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Amendment(Answer):
    id: str
    contract_id: str
    kind: str  # "plan" | "end"
    status: str
    effective_from: str | None
    plan: Obj | None
    end: str | None
    note: str | None
    request: Obj
    proposed_by: str
    proposed_tx: str
    proposed_at: str
    answered_by: str | None
    answered_tx: str | None
    answered_at: str | None
    version: int | None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContractHistory(Answer):
    contract_id: str
    status: str
    plan_version: int | None
    versions: tuple[Obj, ...]
    amendments: tuple[Amendment, ...]
    ended_by: Obj | None = None  # {"amendment_id", "end", "at", "accepted_tx"}


@dataclass(frozen=True, kw_only=True)
class Booking(Answer):
    asset_id: str
    id: str
    contract_id: str
    provider: str
    customer: str
    start: str
    end: str
    status: str
    proposed_by: str
    proposed_tx: str
    accepted_tx: str | None = None


@dataclass(frozen=True, kw_only=True)
class BookingList(Answer):
    bookings: tuple[Booking, ...]
