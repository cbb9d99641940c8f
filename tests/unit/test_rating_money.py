"""Money: ISO 4217 exponents, half-up rounding, formatting, strict decimal parsing."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest

from chaincode.money import format_decimal, known_currencies
from chaincode.rating import (
    UnknownCurrency,
    format_money,
    minor_units,
    parse_quantity,
    parse_unit_price,
    rate,
    round_money,
)
from tests.helpers.rating import reading, simple_plan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("EUR", 2), ("USD", 2), ("GBP", 2), ("CHF", 2), ("JPY", 0), ("KWD", 3), ("CLP", 0), ("BHD", 3),
     ("KRW", 0), ("CLF", 4), ("SEK", 2), ("TND", 3)],
)  # fmt: skip
def test_minor_units(currency: str, exponent: int) -> None:
    assert minor_units(currency) == exponent


@pytest.mark.parametrize("bad", ["XXX", "eur", "", "EURO", None, 978])
def test_unknown_currency_is_refused(bad: object) -> None:
    with pytest.raises(UnknownCurrency):
        minor_units(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown currency"):
        round_money(Decimal("1"), bad)  # type: ignore[arg-type]


def test_every_known_currency_rounds_to_its_exponent() -> None:
    for cur in known_currencies():
        assert -round_money(Decimal("1.23456"), cur).as_tuple().exponent == minor_units(cur)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "EUR", "0.01"),
        ("0.015", "EUR", "0.02"),
        ("0.025", "EUR", "0.03"),  # half-even would give 0.02
        ("2.675", "EUR", "2.68"),
        ("2.674999", "EUR", "2.67"),
        ("10.125", "USD", "10.13"),
        ("-0.005", "EUR", "-0.01"),  # half away from zero, symmetric
        ("-0.001", "EUR", "0.00"),  # never "-0.00"
        ("0.5", "JPY", "1"),
        ("2.5", "JPY", "3"),  # half-even would give 2
        ("1199.4999", "JPY", "1199"),
        ("0.5", "CLP", "1"),
        ("1.0005", "KWD", "1.001"),
        ("1.0004", "KWD", "1.000"),
        ("7", "KWD", "7.000"),
        ("0.00005", "CLF", "0.0001"),
    ],
)
def test_round_money_half_up(amount: str, currency: str, expected: str) -> None:
    assert format_decimal(round_money(Decimal(amount), currency)) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [("10600", "EUR", "10600.00"), ("1200", "JPY", "1200"), ("1.25", "KWD", "1.250"), ("0", "EUR", "0.00"),
     ("1199.5", "JPY", "1200"), ("0.1", "CLP", "0")],
)  # fmt: skip
def test_format_money(amount: str, currency: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency) == expected


def test_rounding_ignores_the_callers_decimal_context() -> None:
    """A caller (or a library) that changed the thread's context must not change any invoice."""
    plan = simple_plan([{"id": "p", "model": "per_unit", "metric": "m", "unit_price": "0.333333333333"}],
                       tax={"rate": "0.19"})  # fmt: skip
    from chaincode.rating import batch_aggregate

    agg = batch_aggregate(plan, [reading("a", "m", "123456789012.123456789012")])
    expected = rate(plan, agg).to_json()
    with decimal.localcontext() as ctx:
        ctx.prec = 5
        ctx.rounding = decimal.ROUND_HALF_EVEN
        ctx.traps[decimal.Inexact] = True
        assert rate(plan, agg).to_json() == expected
        assert format_money(Decimal("2.5"), "JPY") == "3"
    # independent oracle: exact rational product, half-up to cents with integers
    exact = Fraction("123456789012.123456789012") * Fraction("0.333333333333") * 100
    cents = (exact.numerator * 2 + exact.denominator) // (2 * exact.denominator)
    assert expected["lines"][0]["amount"] == f"{cents // 100}.{cents % 100:02d}"
    # and the exact product needs more than the default 28 digits
    assert len((Decimal("123456789012.123456789012") * Decimal("0.333333333333")).as_tuple().digits) == 28


@pytest.mark.parametrize(
    "text", ["0", "12", "0.75", "1000000000000", "0.000000000001", "007", "999999999999.999999999999"]
)
def test_parse_quantity_accepts_plain_decimals(text: str) -> None:
    assert parse_quantity(text) == Decimal(text)
    assert parse_unit_price(text) == Decimal(text)


@pytest.mark.parametrize(
    "bad",
    ["-1", "-0", "+1", "1e3", "1E3", " 1", "1 ", "1.", ".5", "NaN", "Infinity", "inf", "1000000000000.1",
     "1000000000001", "0.0000000000001", "", "1,5", "١", "0x10", "1_000", 1, 1.5, None, True, b"1"],
)  # fmt: skip
def test_parse_quantity_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_format_decimal_is_plain_and_keeps_the_exponent() -> None:
    assert format_decimal(Decimal("1E-7")) == "0.0000001"
    assert format_decimal(Decimal("30.00")) == "30.00"
    assert format_decimal(Decimal("-0.00")) == "0.00"
    assert format_decimal(Decimal("0E-12")) == "0.000000000000"
    with pytest.raises(ValueError):
        format_decimal(Decimal("NaN"))
