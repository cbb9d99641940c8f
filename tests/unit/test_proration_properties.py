"""Property: splitting a period at any instant never changes the invoice for a plan that did not change.

The same October 2026 (Europe/Berlin, 745 hours) is billed twice by the contract: once as agreed, once
with one to three amendments that repeat the plan unchanged, effective at random instants (to the
microsecond) inside the period. Random plans (flat fee, per-unit or graduated usage, a minimum commitment
and a cap, each optional) and random readings: the two invoices' lines, subtotal, tax and total agree.
A second property checks the proration itself against an independent oracle (exact fractions).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode.proration import prorate
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)

pytestmark = pytest.mark.unit
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U = dt.UTC
START = dt.datetime(2026, 9, 30, 22, tzinfo=U)  # 1 Oct 00:00 CEST
SECONDS = 745 * 3600
KEY = make_device_key("proration")

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2)
price = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("250"), places=3)


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    charges: list[dict[str, Any]] = []
    if draw(st.booleans()):
        charges.append({"id": "base", "model": "flat", "amount": str(draw(money))})
    if draw(st.booleans()):
        charges.append({"id": "use", "model": "per_unit", "metric": "scan", "unit_price": str(draw(price))})
    else:
        up = draw(st.integers(min_value=1, max_value=40))
        charges.append({"id": "use", "model": "graduated", "metric": "scan", "tiers": [
            {"up_to": str(up), "unit_price": str(draw(price))},
            {"up_to": None, "unit_price": str(draw(price))}]})
    return {
        "start": "2026-10-01",
        "metrics": {"scan": {"aggregation": "sum", "unit": "scan"}},
        "charges": charges,
        "minimum_commitment": str(draw(money)) if draw(st.booleans()) else None,
        "maximum": str(draw(money)) if draw(st.booleans()) else None,
    }


def _bill(plan: dict[str, Any], readings: list[tuple[int, str]], splits: list[int]) -> dict[str, Any]:
    ledger = ChaincodeLedger(now=START - dt.timedelta(hours=1))
    active_contract(ledger, KEY, **plan)
    pricing = {k: plan[k] for k in ("charges", "minimum_commitment", "maximum")}
    for i, us in enumerate(splits):
        at = START + dt.timedelta(microseconds=us)
        ledger.submit("ProposeAmendment", {"contract_id": CONTRACT_ID, "id": f"same-{i}",
                                           "effective_from": at.isoformat(), "plan": pricing})
        ledger.submit("AcceptAmendment", {"contract_id": CONTRACT_ID, "amendment_id": f"same-{i}"},
                      org=CUSTOMER)
    ledger.now = START + dt.timedelta(seconds=SECONDS + 3600)
    if readings:
        rs = [reading(f"r{i}", "scan", q, (START + dt.timedelta(seconds=s)).isoformat())
              for i, (s, q) in enumerate(readings)]
        assert ledger.submit("RecordUsage", {"messages": [signed_message(KEY, rs)]})["accepted"] == len(rs)
    return ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-10"})


@PROPS
@given(
    plan=plans(),
    readings=st.lists(st.tuples(st.integers(0, SECONDS - 1), st.sampled_from(["1", "2.5", "0.125", "7"])),
                      max_size=12),
    splits=st.lists(st.integers(1, SECONDS * 1_000_000 - 1), min_size=1, max_size=3, unique=True),
)
def test_splitting_a_period_with_an_unchanged_plan_never_changes_the_invoice(
    plan: dict[str, Any], readings: list[tuple[int, str]], splits: list[int]
) -> None:
    whole = _bill(plan, readings, [])
    split = _bill(plan, readings, sorted(splits))
    named = ("plan_version", "description")
    strip = [{k: v for k, v in line.items() if k not in named} for line in split["lines"]]
    assert strip == whole["lines"]
    money_of = ("subtotal", "tax", "total")
    assert [split[k] for k in money_of] == [whole[k] for k in money_of]
    assert split["plan_versions"] == list(range(1, len(splits) + 2))


@PROPS
@given(amount=money, part=st.integers(0, SECONDS * 1_000_000),
       currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_prorate_is_the_exact_share_rounded_once_half_up(amount: Decimal, part: int, currency: str) -> None:
    whole = SECONDS * 1_000_000
    digits = {"EUR": 2, "JPY": 0, "KWD": 3}[currency]
    exact = Fraction(amount) * Fraction(part, whole)
    # oracle: Decimal at ample precision of the exact fraction (never lands on a false half)
    approx = Decimal(exact.numerator) / Decimal(exact.denominator) if exact else Decimal(0)
    expected = approx.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    got = prorate(amount, part, whole, currency)
    assert got == expected
    assert abs(Fraction(got) - exact) <= Fraction(1, 2 * 10**digits)
