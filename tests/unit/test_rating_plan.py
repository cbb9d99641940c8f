"""Plan validation: every rule has a case that breaks it and names the field (JSON path)."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode.rating import PlanError, parse_plan, validate_plan
from tests.helpers.rating import EXAMPLE_CONTRACT, contract

pytestmark = pytest.mark.unit

TOU = {
    "id": "tou",
    "model": "time_of_use",
    "metric": "scan",
    "windows": [{"days": ["mon", "tue"], "from": "08:00", "to": "18:00", "unit_price": "95.00"}],
    "default_unit_price": "60.00",
}


def with_charge(charge: dict[str, Any]) -> dict[str, Any]:
    return contract(charges=[*EXAMPLE_CONTRACT["charges"], charge])


def x(model: str, **fields: Any) -> dict[str, Any]:
    """The example contract plus one charge "x" of `model`."""
    return with_charge({"id": "x", "model": model, **fields})


def tou(**window: Any) -> dict[str, Any]:
    w = {**TOU["windows"][0], **window}  # type: ignore[index]
    return with_charge({**TOU, "windows": [w]})


def test_example_plan_is_valid_and_parsed() -> None:
    assert validate_plan(EXAMPLE_CONTRACT) == []
    plan = parse_plan(EXAMPLE_CONTRACT)
    assert plan.currency == "EUR" and plan.timezone == "Europe/Berlin"
    assert plan.start == dt.date(2026, 11, 1) and plan.end is None
    assert list(plan.metrics) == ["scan", "magnet_hours", "peak_kw"]
    assert plan.metrics["peak_kw"].aggregation == "max" and plan.metrics["peak_kw"].unit == "kW"
    assert [c.id for c in plan.charges] == ["platform", "scans", "hours"]
    assert plan.charges[1].tiers[0].up_to == Decimal("100") and plan.charges[1].tiers[1].up_to is None
    assert plan.minimum_commitment == Decimal("2000.00") and plan.maximum is None
    assert plan.tax_rate == Decimal("0.19") and plan.tax_category == "S"
    assert plan.charge("hours").unit_price == Decimal("12.50")


def test_every_model_parses() -> None:
    charges = [
        {"id": "f", "model": "flat", "amount": "1.00", "description": "base fee"},
        {"id": "pu", "model": "per_unit", "metric": "scan", "unit_price": "0.000000000001"},
        {"id": "g", "model": "graduated", "metric": "scan", "tiers": [{"up_to": None, "unit_price": "1"}]},
        {"id": "v", "model": "volume", "metric": "scan",
         "tiers": [{"up_to": "10.5", "unit_price": "2"}, {"up_to": None, "unit_price": "1"}]},
        {"id": "p", "model": "package", "metric": "scan", "package_size": "0.5", "package_price": "3"},
        {**TOU, "windows": [{"days": ["sun", "mon"], "from": "00:00", "to": "24:00", "unit_price": "1"}]},
        {"id": "d", "model": "dynamic", "metric": "magnet_hours"},
    ]  # fmt: skip
    plan = parse_plan(contract(charges=charges, end="2026-11-01", tax=None, minimum_commitment=None))
    assert [c.model for c in plan.charges] == [
        "flat", "per_unit", "graduated", "volume", "package", "time_of_use", "dynamic"
    ]  # fmt: skip
    w = plan.charge("tou").windows[0]
    assert (w.days, w.start_minute, w.end_minute) == ((0, 6), 0, 1440)
    assert plan.charge("tou").timezone == "Europe/Berlin"
    assert plan.requires_unit_price("magnet_hours") and not plan.requires_unit_price("scan")
    assert plan.tax_rate is None and plan.end == dt.date(2026, 11, 1)


# (contract, path of the expected error)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown model", x("tiered", **{"metric": "scan"}), "charges[3].model"),
    ("missing model", with_charge({"id": "x", "metric": "scan"}), "charges[3].model"),
    ("missing unit price", x("per_unit", **{"metric": "scan"}), "charges[3].unit_price"),
    ("negative unit price", x("per_unit", **{"metric": "scan", "unit_price": "-1"}),
     "charges[3].unit_price"),
    ("numeric unit price", x("per_unit", **{"metric": "scan", "unit_price": 1.5}),
     "charges[3].unit_price"),
    ("exponent unit price", x("per_unit", **{"metric": "scan", "unit_price": "1e2"}),
     "charges[3].unit_price"),
    ("missing flat amount", x("flat"), "charges[3].amount"),
    ("negative flat amount", x("flat", **{"amount": "-5.00"}), "charges[3].amount"),
    ("flat amount finer than cents", x("flat", **{"amount": "5.001"}),
     "charges[3].amount"),
    ("flat amount with cents in JPY", contract(currency="JPY"), "charges[0].amount"),
    ("missing tier price", x("graduated", **{"metric": "scan",
                                        "tiers": [{"up_to": None}]}), "charges[3].tiers[0].unit_price"),
    ("negative tier price", x("volume", **{"metric": "scan",
                                         "tiers": [{"up_to": None, "unit_price": "-1"}]}),
     "charges[3].tiers[0].unit_price"),
    ("tiers not increasing", x("graduated", **{"metric": "scan", "tiers": [
        {"up_to": "100", "unit_price": "1"}, {"up_to": "100", "unit_price": "1"},
        {"up_to": None, "unit_price": "1"}]}), "charges[3].tiers[1].up_to"),
    ("tiers decreasing", x("volume", **{"metric": "scan", "tiers": [
        {"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "1"},
        {"up_to": None, "unit_price": "1"}]}), "charges[3].tiers[1].up_to"),
    ("unbounded tier not last", x("graduated", **{"metric": "scan", "tiers": [
        {"up_to": None, "unit_price": "1"}, {"up_to": "100", "unit_price": "1"}]}),
     "charges[3].tiers[0].up_to"),
    ("bounded last tier", x("graduated", **{"metric": "scan", "tiers": [
        {"up_to": "100", "unit_price": "1"}]}), "charges[3].tiers[0].up_to"),
    ("tier up_to zero", x("graduated", **{"metric": "scan", "tiers": [
        {"up_to": "0", "unit_price": "1"}, {"up_to": None, "unit_price": "1"}]}),
     "charges[3].tiers[0].up_to"),
    ("tier without up_to", x("graduated", **{"metric": "scan", "tiers": [
        {"unit_price": "1"}]}), "charges[3].tiers[0].up_to"),
    ("no tiers", x("graduated", **{"metric": "scan", "tiers": []}), "charges[3].tiers"),
    ("unknown tier field", x("graduated", **{"metric": "scan", "tiers": [
        {"up_to": None, "unit_price": "1", "flat": "2"}]}), "charges[3].tiers[0].flat"),
    ("package_size zero", x("package", **{"metric": "scan", "package_size": "0",
                                       "package_price": "1"}), "charges[3].package_size"),
    ("package_size negative", x("package", **{"metric": "scan",
                                           "package_size": "-10", "package_price": "1"}),
     "charges[3].package_size"),
    ("package_price missing", x("package", **{"metric": "scan", "package_size": "10"}),
     "charges[3].package_price"),
    ("metric not declared", x("per_unit", **{"metric": "kwh", "unit_price": "1"}),
     "charges[3].metric"),
    ("metric missing", x("dynamic"), "charges[3].metric"),
    ("unknown charge field", x("per_unit", **{"metric": "scan", "unit_price": "1",
                                          "unit_prise": "2"}), "charges[3].unit_prise"),
    ("duplicate charge id", with_charge({"id": "scans", "model": "flat", "amount": "1.00"}), "charges[3].id"),
    ("reserved charge id", with_charge({"id": "maximum_cap", "model": "flat", "amount": "1.00"}),
     "charges[3].id"),
    ("bad charge id", with_charge({"id": "", "model": "flat", "amount": "1.00"}), "charges[3].id"),
    ("charge not an object", with_charge("flat"), "charges[3]"),  # type: ignore[arg-type]
    ("no charges", contract(charges=[]), "charges"),
    ("bad aggregation", contract(metrics={"scan": {"aggregation": "avg"}}), "metrics.scan.aggregation"),
    ("missing aggregation", contract(metrics={"scan": {"unit": "scan"}}), "metrics.scan.aggregation"),
    ("bad metric unit", contract(metrics={**EXAMPLE_CONTRACT["metrics"], "x": {"aggregation": "sum",
                                                                              "unit": 5}}), "metrics.x.unit"),
    ("bad metric name", contract(metrics={**EXAMPLE_CONTRACT["metrics"], "a b": {"aggregation": "sum"}}),
     "metrics.a b"),
    ("no metrics", contract(metrics={}), "metrics"),
    ("unknown currency", contract(currency="XYZ"), "currency"),
    ("lowercase currency", contract(currency="eur"), "currency"),
    ("missing currency", {k: v for k, v in EXAMPLE_CONTRACT.items() if k != "currency"}, "currency"),
    ("unknown timezone", contract(timezone="Europe/Atlantis"), "timezone"),
    ("host-only timezone", contract(timezone="localtime"), "timezone"),
    ("bad start", contract(start="2026-11-31"), "start"),
    ("start with time", contract(start="2026-11-01T00:00:00Z"), "start"),
    ("start year 1", contract(start="0001-01-01"), "start"),
    ("end year 9999", contract(end="9999-12-31"), "end"),
    ("bad end", contract(end="tomorrow"), "end"),
    ("end before start", contract(end="2026-10-31"), "end"),
    ("negative commitment", contract(minimum_commitment="-1.00"), "minimum_commitment"),
    ("commitment finer than cents", contract(minimum_commitment="1.001"), "minimum_commitment"),
    ("negative maximum", contract(maximum="-1"), "maximum"),
    ("numeric maximum", contract(maximum=100), "maximum"),
    ("tax rate one", contract(tax={"rate": "1", "category": "S"}), "tax.rate"),
    ("tax rate above one", contract(tax={"rate": "1.5"}), "tax.rate"),
    ("negative tax rate", contract(tax={"rate": "-0.19"}), "tax.rate"),
    ("tax rate missing", contract(tax={"category": "S"}), "tax.rate"),
    ("tax category unknown", contract(tax={"rate": "0.19", "category": "standard"}), "tax.category"),
    ("tax not an object", contract(tax="0.19"), "tax"),
    ("window bad day", tou(days=["monday"]), "charges[3].windows[0].days"),
    ("window no days", tou(days=[]), "charges[3].windows[0].days"),
    ("window day twice", tou(days=["mon", "mon"]), "charges[3].windows[0].days"),
    ("window bad from", tou(**{"from": "8:00"}), "charges[3].windows[0].from"),
    ("window from 24:00", tou(**{"from": "24:00", "to": "24:00"}), "charges[3].windows[0].from"),
    ("window bad to", tou(to="18:60"), "charges[3].windows[0].to"),
    ("window to 25:00", tou(to="25:00"), "charges[3].windows[0].to"),
    ("window to before from", tou(**{"from": "18:00", "to": "08:00"}), "charges[3].windows[0].to"),
    ("window empty", tou(**{"from": "08:00", "to": "08:00"}), "charges[3].windows[0].to"),
    ("window negative price", tou(unit_price="-1"), "charges[3].windows[0].unit_price"),
    ("window unknown field", tou(price="1"), "charges[3].windows[0].price"),
    ("no windows", with_charge({**TOU, "windows": []}), "charges[3].windows"),
    ("tou without default price", with_charge({k: v for k, v in TOU.items() if k != "default_unit_price"}),
     "charges[3].default_unit_price"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "path"), CASES, ids=[c[0] for c in CASES])
def test_validation_error(name: str, body: dict[str, Any], path: str) -> None:
    errors = validate_plan(body)
    assert path in [e["path"] for e in errors], errors
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    with pytest.raises(PlanError) as info:
        parse_plan(body)
    assert info.value.errors == errors


def test_all_errors_are_reported_at_once() -> None:
    body = contract(currency="XYZ", timezone="Mars/Olympus", end="2020-01-01", tax={"rate": "2"})
    paths = [e["path"] for e in validate_plan(body)]
    assert paths == ["currency", "timezone", "end", "tax.rate"]
    assert "currency" in str(PlanError(validate_plan(body)))


def test_not_an_object() -> None:
    assert validate_plan([]) == [{"path": "", "message": "plan must be a JSON object"}]  # type: ignore[arg-type]


def test_other_contract_fields_are_ignored() -> None:
    assert validate_plan(contract(erp={"whatever": 1}, assets=[], provider=None)) == []


def test_zero_prices_and_rates_are_allowed() -> None:
    body = contract(tax={"rate": "0", "category": "Z"}, minimum_commitment="0", maximum="0.00")
    assert validate_plan(body) == []


# --- robustness: any JSON in any field gives a list of errors, never a crash -----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["", "-1", "0", "1.5", "1e3", "24:00", "mon", "sum", "EUR", "UTC", "flat", "scan"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in _paths(with_charge(TOU)) if p]


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(ALL_PATHS), value=json_values)
def test_any_value_anywhere_is_an_error_list_not_a_crash(path: tuple[Any, ...], value: Any) -> None:
    body = copy.deepcopy(with_charge(TOU))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = validate_plan(body)
    assert isinstance(errors, list)
    assert all(set(e) == {"path", "message"} for e in errors)
    if errors:
        with pytest.raises(PlanError):
            parse_plan(body)
    else:
        parse_plan(body)
