"""Exact decimal arithmetic for rating: parsing, currency exponents, half-up rounding.

Every peer must compute bit-for-bit the same invoice, so nothing here depends on the caller's thread-local
`decimal` context (which another library in the same process may have changed): all arithmetic goes
through `EXACT`, a context with room for far more digits than any bill needs and with `Inexact` trapped.
An operation that would have to round silently therefore raises instead; the only intended rounding is
`round_money`, which says so explicitly (ISO 4217 minor units, ROUND_HALF_UP, never Python's default
half-even).
"""

from __future__ import annotations

import re
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

# 200 significant digits: a quantity has at most 25 (10^12 with 12 decimals), a price as many; their
# product and sums over billions of readings stay far below. Inexact is trapped: exactness is checked,
# not hoped for.
EXACT = Context(
    prec=200,
    rounding=ROUND_HALF_UP,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
# Rounding context for `round_money` only: same limits, rounding allowed.
_ROUNDING = Context(
    prec=200, rounding=ROUND_HALF_UP, Emax=999_999, Emin=-999_999, traps=[InvalidOperation, Overflow]
)

MAX_QUANTITY = Decimal(10) ** 12
MAX_FRACTION_DIGITS = 12
ZERO = Decimal(0)
ONE = Decimal(1)

_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")

# ISO 4217 minor units (exponents). Currencies not listed are refused rather than guessed: a wrong
# exponent would mis-round every invoice in that currency.
_MINOR_UNITS: dict[str, int] = {
    # 0 decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # 3 decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # 4 decimals
    "CLF": 4, "UYW": 4,
    # 2 decimals
    "AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "COP": 2,
    "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2,
    "INR": 2, "KES": 2, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2, "PEN": 2,
    "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2, "SAR": 2, "SEK": 2, "SGD": 2,
    "THB": 2, "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "ZAR": 2,
}  # fmt: skip


class UnknownCurrency(ValueError):
    """The currency code is not one whose ISO 4217 exponent this module knows."""


def minor_units(currency: str) -> int:
    """ISO 4217 exponent of `currency` (EUR 2, JPY 0, KWD 3); `UnknownCurrency` for anything else."""
    try:
        return _MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(f"unknown currency {currency!r}") from None


def known_currencies() -> tuple[str, ...]:
    """The supported currency codes, sorted (for error messages and tests)."""
    return tuple(sorted(_MINOR_UNITS))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Quantize to the currency's minor unit, half-up (away from zero at exactly half).

    A result of zero is returned unsigned so that "-0.00" can never reach an invoice.
    """
    exponent = Decimal(1).scaleb(-minor_units(currency))
    result = amount.quantize(exponent, rounding=ROUND_HALF_UP, context=_ROUNDING)
    return result.copy_abs() if result.is_zero() else result


def format_money(amount: Decimal, currency: str) -> str:
    """Fixed-point string with exactly the currency's minor digits: "10600.00", JPY "1200", KWD "1.250"."""
    return format(round_money(amount, currency), "f")


def format_decimal(value: Decimal) -> str:
    """Plain fixed-point notation that keeps the value's exponent ("30.00" stays "30.00", never "3.000E+1").

    `str(Decimal)` switches to scientific notation for small values ("1E-7"), which would not be a plain
    decimal string on the wire.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    text = format(value, "f")
    return "0" + text[2:] if text.startswith("-0") and value.is_zero() else text


def parse_plain_decimal(
    text: object,
    *,
    max_value: Decimal | None = MAX_QUANTITY,
    max_fraction_digits: int | None = MAX_FRACTION_DIGITS,
    what: str = "value",
) -> Decimal:
    """Parse a non-negative plain decimal string ("12", "0.75"): no sign, exponent, spaces or specials.

    Raises ValueError with a message that names the limit broken.
    """
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a decimal string, got {type(text).__name__}")
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise ValueError(f"{what} must be a plain non-negative decimal string like \"12.5\", got {text!r}")
    _, _, fraction = text.partition(".")
    if max_fraction_digits is not None and len(fraction) > max_fraction_digits:
        raise ValueError(f"{what} has more than {max_fraction_digits} fraction digits: {text!r}")
    value = Decimal(text)
    if max_value is not None and value > max_value:
        raise ValueError(f"{what} exceeds {max_value}: {text!r}")
    return value


def parse_quantity(text: object) -> Decimal:
    """A reading quantity: plain decimal string, >= 0, <= 10^12, at most 12 fraction digits."""
    return parse_plain_decimal(text, what="quantity")


def parse_unit_price(text: object) -> Decimal:
    """A reading's own `unit_price` (dynamic charges): same rules as a quantity (non-negative)."""
    return parse_plain_decimal(text, what="unit_price")
