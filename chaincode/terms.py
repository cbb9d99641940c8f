"""Money terms a contract may carry beside its plan (ADR 0051): both parties agree to them with the contract.

- `prepaid`: `{"low_balance": "100.00", "top_up_amount"?: "500.00"}`: below `low_balance` the prepaid
  balance is low (an alert for both parties); with `top_up_amount` the provider's hub also collects that
  amount by SEPA direct debit under the contract's mandate, once per time the balance falls below.
- `billing_threshold`: `"1000.00"`: progressive billing; whenever the running period's cost to date (tax
  included) not yet invoiced reaches it, an interim invoice bills the usage so far.

Amounts are plain positive decimal strings with at most the currency's minor units. A bad value refuses the
proposal (`invalid_terms`); records without these fields behave as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from chaincode.errors import ChaincodeError
from chaincode.model import parse_amount
from chaincode.money import UnknownCurrency, minor_units

PREPAID_FIELDS = ("low_balance", "top_up_amount")


def _amount(value: Any, field: str, currency: str) -> Decimal:
    try:
        return parse_amount(value, field, minor_units(currency))
    except ChaincodeError as exc:
        raise ChaincodeError("invalid_terms", exc.message, field=field) from None


def _currency(contract: Mapping[str, Any]) -> str:
    currency = contract.get("currency")
    try:
        minor_units(str(currency))
    except UnknownCurrency:
        raise ChaincodeError("invalid_terms", f"unknown currency {currency!r}", field="currency") from None
    return str(currency)


def validate(contract: Mapping[str, Any]) -> None:
    """Refuse a proposal whose money terms are malformed (`invalid_terms`, naming the field)."""
    prepaid_terms(contract)
    billing_threshold(contract)


def prepaid_terms(contract: Mapping[str, Any]) -> dict[str, Decimal]:
    """`{"low_balance": D, "top_up_amount"?: D}`, or {} when the contract has no prepaid terms."""
    terms = contract.get("prepaid")
    if terms is None:
        return {}
    if not isinstance(terms, Mapping):
        raise ChaincodeError("invalid_terms", "prepaid must be an object", field="prepaid")
    unknown = sorted(set(terms) - set(PREPAID_FIELDS))
    if unknown:
        raise ChaincodeError("invalid_terms", f"prepaid: unknown field(s) {unknown}", field="prepaid")
    if "low_balance" not in terms:
        raise ChaincodeError("invalid_terms", "prepaid.low_balance is required", field="prepaid.low_balance")
    currency = _currency(contract)
    out = {"low_balance": _amount(terms["low_balance"], "prepaid.low_balance", currency)}
    if "top_up_amount" in terms:
        out["top_up_amount"] = _amount(terms["top_up_amount"], "prepaid.top_up_amount", currency)
    return out


def billing_threshold(contract: Mapping[str, Any]) -> Decimal | None:
    value = contract.get("billing_threshold")
    if value is None:
        return None
    return _amount(value, "billing_threshold", _currency(contract))
