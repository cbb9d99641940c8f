"""Properties of rating: split/order independence, totals, tier arithmetic against independent oracles."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaincode.rating import (
    ReadingIn,
    batch_aggregate,
    merge,
    minor_units,
    parse_plan,
    rate,
    reading_from_record,
)
from tests.helpers.rating import contract, simple_plan

pytestmark = pytest.mark.unit
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# October 2026 in Berlin contains the fall-back DST change (25 Oct), so windows and periods are exercised.
PERIOD_START = dt.datetime(2026, 9, 30, 22, tzinfo=dt.UTC)
PERIOD_SECONDS = 31 * 24 * 3600 + 3600  # 744 h plus the repeated hour
DST_DAY = 86_400 * 24  # PERIOD_START + 24 days = 24 Oct 22:00 UTC = 25 Oct 00:00 CEST
OFFSETS = [dt.timezone(dt.timedelta(minutes=m)) for m in (0, 60, 120, -300, 330, 825)]

PLAN = parse_plan(
    contract(
        currency="EUR",
        timezone="Europe/Berlin",
        start="2026-01-01",
        metrics={
            "s": {"aggregation": "sum", "unit": "u"},
            "x": {"aggregation": "max", "unit": "u"},
            "c": {"aggregation": "count", "unit": "u"},
            "l": {"aggregation": "latest", "unit": "u"},
            "p": {"aggregation": "sum", "unit": "kWh"},
        },
        charges=[
            {"id": "base", "model": "flat", "amount": "10.00"},
            {"id": "g", "model": "graduated", "metric": "s",
             "tiers": [{"up_to": "5", "unit_price": "1.005"}, {"up_to": None, "unit_price": "0.333"}]},
            {"id": "v", "model": "volume", "metric": "x",
             "tiers": [{"up_to": "2", "unit_price": "3.3333"}, {"up_to": None, "unit_price": "2.5"}]},
            {"id": "k", "model": "package", "metric": "c", "package_size": "3", "package_price": "0.99"},
            {"id": "pu", "model": "per_unit", "metric": "l", "unit_price": "7.77"},
            {"id": "t", "model": "time_of_use", "metric": "s", "default_unit_price": "0.1",
             "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00",
                          "unit_price": "0.45"},
                         {"days": ["sun"], "from": "02:00", "to": "03:00", "unit_price": "9"}]},
            {"id": "d", "model": "dynamic", "metric": "p"},
        ],
        minimum_commitment="60.00",
        maximum="80.00",
        tax={"rate": "0.19", "category": "S"},
    )
)  # fmt: skip

# equal values with different representations on purpose
QUANTITIES = ["0", "0.0", "1", "1.0", "1.00", "2", "2.0", "2.5", "0.333", "3", "10", "0.000000000001"]


@st.composite
def readings(draw: Any, max_size: int = 25) -> list[ReadingIn]:
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        metric = draw(st.sampled_from(list(PLAN.metrics)))
        # few distinct instants, so equal timestamps (latest ties) are common
        # (and both occurrences of 02:xx on 25 Oct, when Berlin falls back from CEST to CET)
        seconds = draw(st.sampled_from([0, 3600, DST_DAY + 3600, DST_DAY + 2 * 3600, DST_DAY + 3 * 3600 + 59])
                       | st.integers(0, PERIOD_SECONDS - 1))  # fmt: skip
        tz = draw(st.sampled_from(OFFSETS))
        ts = (PERIOD_START + dt.timedelta(seconds=seconds)).astimezone(tz)
        record = {
            "id": f"r{draw(st.integers(0, 9))}-{i}",
            "device_id": "dev",
            "metric": metric,
            "quantity": draw(st.sampled_from(QUANTITIES)),
            "timestamp": ts.isoformat(),
        }
        if metric == "p":
            record["unit_price"] = draw(st.sampled_from(["0.1234", "0", "1.5", "0.00001"]))
        out.append(reading_from_record(record))
    return out


def split(items: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


@PROPS
@given(
    rs=readings(), perm=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 100), max_size=5)
)
def test_any_order_and_any_split_give_the_same_result(
    rs: list[ReadingIn], perm: Any, cuts: list[int]
) -> None:
    whole = batch_aggregate(PLAN, rs)
    shuffled = list(rs)
    perm.shuffle(shuffled)
    parts = [batch_aggregate(PLAN, chunk) for chunk in split(shuffled, cuts)]
    perm.shuffle(parts)
    merged = merge(parts)
    assert merged.to_json() == whole.to_json()
    assert rate(PLAN, merged).to_json() == rate(PLAN, whole).to_json()
    # associativity: merging merged halves
    half = len(parts) // 2
    assert merge([merge(parts[:half]), merge(parts[half:])]).to_json() == whole.to_json()
    assert whole.readings == len(rs)


@PROPS
@given(rs=readings())
def test_totals_add_up(rs: list[ReadingIn]) -> None:
    out = rate(PLAN, batch_aggregate(PLAN, rs))
    assert out.total == out.subtotal + out.tax
    assert out.subtotal == sum(line.amount for line in out.lines)
    assert all(-line.amount.as_tuple().exponent == 2 for line in out.lines)
    assert out.subtotal >= PLAN.minimum_commitment  # type: ignore[operator]
    metered = sum(line.amount for line in out.lines if line.model not in ("flat", "minimum_commitment"))
    assert metered <= PLAN.maximum  # type: ignore[operator]
    assert out.tax == half_up(Fraction(out.subtotal) * Fraction("0.19"), 2)


def half_up(x: Fraction, digits: int) -> Decimal:
    """Independent half-up rounding of an exact rational (away from zero at .5)."""
    scaled = x * 10**digits
    sign = -1 if scaled < 0 else 1
    n = (abs(scaled.numerator) * 2 + scaled.denominator) // (2 * scaled.denominator)
    return Decimal(sign * n).scaleb(-digits)


# strictly increasing bounds, 0-4 of them (the unbounded last tier is added by each test)
tier_plans = st.lists(st.integers(1, 50), max_size=4).map(lambda steps: list(itertools.accumulate(steps)))
prices = st.sampled_from(["0", "0.005", "1", "2.5", "12.345", "85.00", "0.333333"])


@PROPS
@given(
    bounds=tier_plans,
    price_list=st.lists(prices, min_size=5, max_size=5),
    q=st.integers(0, 250),
    currency=st.sampled_from(["EUR", "JPY", "KWD", "CLP"]),
)
def test_graduated_is_the_sum_of_each_unit_priced_by_its_tier(
    bounds: list[int], price_list: list[str], q: int, currency: str
) -> None:
    tiers = [{"up_to": str(b), "unit_price": price_list[i]} for i, b in enumerate(bounds)]
    tiers.append({"up_to": None, "unit_price": price_list[len(bounds)]})
    plan = simple_plan([{"id": "g", "model": "graduated", "metric": "m", "tiers": tiers}], currency=currency)
    got = rate(plan, batch_aggregate(plan, [_r("m", str(q))])).lines[0].amount

    def unit_price(k: int) -> Fraction:  # unit k (1-based) falls in the first tier whose bound is >= k
        for i, b in enumerate(bounds):
            if k <= b:
                return Fraction(price_list[i])
        return Fraction(price_list[len(bounds)])

    assert got == half_up(sum((unit_price(k) for k in range(1, q + 1)), Fraction(0)), minor_units(currency))


@PROPS
@given(
    bounds=tier_plans,
    price_list=st.lists(prices, min_size=5, max_size=5),
    q=st.sampled_from(["0", "1", "0.5", "7", "12.25", "50", "51", "100", "199.999", "200", "1000"])
    | st.integers(0, 250).map(str),
)
def test_graduated_fractional_quantities_sum_over_tier_slices(
    bounds: list[int], price_list: list[str], q: str
) -> None:
    tiers = [{"up_to": str(b), "unit_price": price_list[i]} for i, b in enumerate(bounds)]
    tiers.append({"up_to": None, "unit_price": price_list[len(bounds)]})
    plan = simple_plan([{"id": "g", "model": "graduated", "metric": "m", "tiers": tiers}])
    got = rate(plan, batch_aggregate(plan, [_r("m", q)])).lines[0].amount
    qf = Fraction(q)
    edges = [Fraction(0), *(Fraction(b) for b in bounds), None]
    exact = Fraction(0)
    for i in range(len(bounds) + 1):
        lo, hi = edges[i], edges[i + 1]
        width = max(Fraction(0), (qf if hi is None else min(qf, hi)) - lo)  # type: ignore[operator]
        exact += width * Fraction(price_list[i])
    assert got == half_up(exact, 2)


@PROPS
@given(
    bounds=tier_plans,
    price_list=st.lists(prices, min_size=5, max_size=5),
    q=st.integers(0, 250).map(str) | st.sampled_from(["0.5", "12.25", "50.0001", "199.999"]),
)
def test_volume_is_per_unit_at_the_tier_the_total_reaches(
    bounds: list[int], price_list: list[str], q: str
) -> None:
    tiers = [{"up_to": str(b), "unit_price": price_list[i]} for i, b in enumerate(bounds)]
    tiers.append({"up_to": None, "unit_price": price_list[len(bounds)]})
    volume = simple_plan([{"id": "v", "model": "volume", "metric": "m", "tiers": tiers}])
    reached = sum(1 for b in bounds if Fraction(q) > b)  # tiers wholly below the total
    per_unit = simple_plan(
        [{"id": "v", "model": "per_unit", "metric": "m", "unit_price": price_list[reached]}]
    )
    rs = [_r("m", q)]
    v = rate(volume, batch_aggregate(volume, rs)).lines[0]
    p = rate(per_unit, batch_aggregate(per_unit, rs)).lines[0]
    assert (v.quantity, v.amount) == (p.quantity, p.amount)


def _r(metric: str, quantity: str) -> ReadingIn:
    return ReadingIn("r", metric, Decimal(quantity), dt.datetime(2026, 11, 10, tzinfo=dt.UTC))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rs=readings(max_size=20))
def test_time_of_use_and_dynamic_equal_per_reading_pricing(rs: list[ReadingIn]) -> None:
    """Oracle: price each reading on its own (local time via the stdlib zone), sum exactly, round once."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    tou_exact = dyn_exact = Fraction(0)
    tou_qty = dyn_qty = Fraction(0)
    for r in rs:
        if r.metric == "s":
            local = r.timestamp.astimezone(berlin)
            minutes = local.hour * 60 + local.minute
            if local.weekday() < 5 and 8 * 60 <= minutes < 18 * 60:
                price = Fraction("0.45")
            elif local.weekday() == 6 and 2 * 60 <= minutes < 3 * 60:
                price = Fraction(9)
            else:
                price = Fraction("0.1")
            tou_exact += Fraction(r.quantity) * price
            tou_qty += Fraction(r.quantity)
        elif r.metric == "p":
            dyn_exact += Fraction(r.quantity) * Fraction(r.unit_price)  # type: ignore[arg-type]
            dyn_qty += Fraction(r.quantity)
    lines = {ln.charge_id: ln for ln in rate(PLAN, batch_aggregate(PLAN, rs)).lines}
    assert lines["t"].amount == half_up(tou_exact, 2) and Fraction(lines["t"].quantity) == tou_qty
    assert lines["d"].amount == half_up(dyn_exact, 2) and Fraction(lines["d"].quantity) == dyn_qty
