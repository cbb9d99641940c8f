"""The use-case functions moved out of the routers (ADR 0062): the run-rate forecast with minimum commitment
and tax, the prepaid and progressive-billing views, and the one visibility rule with the SQL built from it."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from hub.billing.client import ContractClient
from hub.billing.contracts import list_contracts, list_invoices
from hub.billing.forecast import (
    billing_summary,
    current_period,
    forecast,
    metric_forecast,
    minimum_commitment,
    prepaid_summary,
    tax_on,
)
from hub.billing.visibility import may_see, may_see_asset, not_visible, visible_to
from hub.principal import Principal
from hub.store.models import Base, ContractView, InvoiceView

pytestmark = pytest.mark.unit
UTC = dt.UTC

CONTRACT = {"id": "c1", "timezone": "UTC", "minimum_commitment": "300.00", "tax": {"rate": "0.20"},
            "metrics": {"scan": {"aggregation": "sum"}, "peak": {"aggregation": "max"},
                        "calls": {"aggregation": "count"}, "level": {"aggregation": "latest"}}}
USAGE = {
    "cost": {"total": "150.00", "lines": [
        {"id": "platform", "model": "flat", "amount": "50.00"},
        {"id": "scans", "model": "per_unit", "amount": "100.00"},
        {"id": "min", "model": "minimum_commitment", "amount": "0.00"},
    ]},
    "aggregate": {"metrics": {"scan": {"sum": "10"}, "peak": {"max": "4.5"}, "calls": {"count": 3},
                              "level": {"latest": ["t", "r", "7.25"]}}},
}


def test_forecast_scales_usage_keeps_flat_lines_then_minimum_and_tax() -> None:
    now = dt.datetime(2026, 3, 16, tzinfo=UTC)  # 15 of March's 31 days elapsed
    result = forecast(USAGE, {**CONTRACT, "minimum_commitment": None}, "2026-03", now)
    assert result is not None
    # 50.00 flat + 100.00 * 31/15 = 256.666.. -> 256.67; tax 20 % half-up
    assert (result["subtotal"], result["tax"], result["total"]) == ("256.67", "51.33", "308.00")
    assert result["elapsed_fraction"] == "0.4839" and result["method"] == "linear_run_rate"
    assert result["metrics"] == {"scan": "20.67", "peak": "4.50", "calls": "6.20", "level": "7.25"}
    raised = forecast(USAGE, {**CONTRACT, "minimum_commitment": "300"}, "2026-03", now)
    assert raised is not None and (raised["subtotal"], raised["tax"], raised["total"]) == (
        "300.00", "60.00", "360.00")


def test_forecast_uses_the_real_length_of_a_dst_month() -> None:
    """March 2026 in Berlin has 743 hours (clocks go forward): halfway in real seconds is 0.5, not the
    744-hour wall-clock month the naive datetime(y, m, 1, tzinfo=tz) arithmetic measured."""
    contract = {**CONTRACT, "timezone": "Europe/Berlin", "minimum_commitment": None}
    start = dt.datetime(2026, 2, 28, 23, tzinfo=UTC)  # 2026-03-01 00:00 +01:00
    half = start + dt.timedelta(hours=743) / 2
    result = forecast(USAGE, contract, "2026-03", half)
    assert result is not None and result["elapsed_fraction"] == "0.5000"
    assert result["subtotal"] == "250.00"  # 50 + 100 * 2


@pytest.mark.parametrize("now", [dt.datetime(2026, 2, 28, 22, 59, tzinfo=UTC),  # before the period
                                 dt.datetime(2026, 3, 31, 22, tzinfo=UTC)])  # Berlin's April has begun
def test_no_forecast_outside_the_running_period(now: dt.datetime) -> None:
    assert forecast(USAGE, {**CONTRACT, "timezone": "Europe/Berlin"}, "2026-03", now) is None


def test_no_forecast_without_cost_lines_or_with_garbage() -> None:
    now = dt.datetime(2026, 3, 16, tzinfo=UTC)
    assert forecast({"cost": {"lines": []}}, CONTRACT, "2026-03", now) is None
    bad = {"cost": {"total": "1.00", "lines": [{"model": "per_unit", "amount": "x"}]}}
    assert forecast(bad, CONTRACT, "2026-03", now) is None


def test_minimum_and_tax_round_half_up_to_the_minor_unit() -> None:
    cent = Decimal("0.01")
    assert minimum_commitment(Decimal("10.00"), "12.345", cent) == Decimal("12.35")
    assert minimum_commitment(Decimal("20.00"), "12.345", cent) == Decimal("20.00")
    assert minimum_commitment(Decimal("20.00"), None, cent) == Decimal("20.00")
    assert tax_on(Decimal("0.25"), {"tax": {"rate": "0.1"}}, cent) == Decimal("0.03")  # 0.025 -> 0.03
    assert tax_on(Decimal("10"), {}, cent) == Decimal("0.00")


def test_metric_forecast_of_a_metric_without_readings_is_zero() -> None:
    assert metric_forecast({}, {"metrics": {"scan": None}}, Decimal(2)) == {"scan": "0.00"}


def test_current_period_is_the_contract_zones_month() -> None:
    instant = dt.datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    assert current_period("UTC", instant) == "2026-03"
    assert current_period("Europe/Berlin", instant) == "2026-04"
    assert current_period("America/New_York", dt.datetime(2026, 4, 1, 3, tzinfo=UTC)) == "2026-03"


def test_prepaid_summary() -> None:
    record = {"balance": "100.00", "movements": [{"amount": "100.00"}], "low": True}
    running = {"running": {"drawn": "30.00"}}
    usage = {"cost": {"total": "80.00"}}
    assert prepaid_summary(record, running, usage) == {
        "balance": "100.00", "cost_to_date": "80.00", "drawn": "30.00", "undrawn": "50.00",
        "available": "50.00", "covers_cost_to_date": "true", "low_balance": "true"}
    closed = prepaid_summary(record, {"running": {"drawn": "30.00", "closed_by": "inv-1"}}, usage)
    assert closed is not None and closed["undrawn"] == "0"
    short = prepaid_summary({"balance": "10.00", "movements": [{}]}, running, usage)
    assert short is not None and (short["available"], short["covers_cost_to_date"]) == ("0", "false")
    assert prepaid_summary({"balance": "0", "movements": []}, running, usage) is None


def test_billing_summary() -> None:
    view = {"billing_threshold": "500.00", "unbilled": "20.00",
            "running": {"billed": {"total": "500.00"}, "interims": ["inv-c1-2026-03-i1"]}}
    assert billing_summary(view) == {"threshold": "500.00", "billed": "500.00", "unbilled": "20.00",
                                     "interim_invoices": ["inv-c1-2026-03-i1"]}
    assert billing_summary({}) == {"threshold": None, "billed": "0", "unbilled": "0", "interim_invoices": []}


# --- visibility ---------------------------------------------------------------------------------

ORGS = ("P1", "P2", "C1", "C2", "A")
ROLES = ("provider", "customer", "auditor", "operator", "device")
PRINCIPALS = [Principal(org, role, "t") for org, role in itertools.product(ORGS, ROLES)]


def test_may_see_matrix() -> None:
    assert may_see(Principal("P1", "provider", "t"), "P1", "C1")
    assert not may_see(Principal("C1", "provider", "t"), "P1", "C1")  # role and org must both match
    assert may_see(Principal("C1", "customer", "t"), "P1", "C1")
    assert not may_see(Principal("P1", "customer", "t"), "P1", "C1")
    assert may_see(Principal("X", "auditor", "t"), "P1", "C1")
    assert may_see(Principal("C1", "operator", "t"), "P1", "C1")
    assert not may_see(Principal("X", "operator", "t"), "P1", "C1")
    assert may_see_asset(Principal("P1", "device", "t"), "P1")
    assert not may_see_asset(Principal("P2", "provider", "t"), "P1")
    assert may_see_asset(Principal("X", "auditor", "t"), "P1")
    error = not_visible("unknown_contract", "contract", "c9")
    assert (error.status, error.code, error.detail) == (404, "unknown_contract",
                                                        "no contract 'c9' visible to this caller")


@pytest.fixture
def db() -> sessionmaker:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[ContractView.__table__, InvoiceView.__table__])
    session = sessionmaker(engine, expire_on_commit=False)
    with session.begin() as s:
        for n, (provider, customer) in enumerate(itertools.product(("P1", "P2"), ("C1", "C2"))):
            s.add(ContractView(id=f"c{n}", provider=provider, customer=customer, status="ACTIVE",
                               currency="EUR", timezone="UTC", start="2026-01-01"))
            s.add(InvoiceView(id=f"inv-c{n}", type="invoice", contract_id=f"c{n}", period="2026-01",
                              provider=provider, customer=customer, status="ISSUED", currency="EUR",
                              total="1.00"))
    return session


def test_sql_filters_show_exactly_what_may_see_allows(db: sessionmaker) -> None:
    """For every role and org, the read-model lists hold exactly the rows the look-up rule lets it see."""
    with db() as session:
        contracts = list(session.scalars(select(ContractView)))
    for principal in PRINCIPALS:
        expected = sorted(c.id for c in contracts if may_see(principal, c.provider, c.customer))
        assert [c["id"] for c in list_contracts(db, principal)] == expected, principal
        assert [i["contract_id"] for i in list_invoices(db, principal)] == expected, principal
        with db() as session:
            rows = session.scalars(select(ContractView).where(*visible_to(principal, ContractView)))
            assert sorted(r.id for r in rows) == expected
    # the filters combine with the others
    auditor = Principal("A", "auditor", "t")
    assert [i["id"] for i in list_invoices(db, auditor, contract="c1", status="issued",
                                           period="2026-01")] == ["inv-c1"]
    assert list_contracts(db, auditor, status="ENDED") == []


# --- the usage reads (each over a real ContractClient on a stub that answers like the chaincode) ------------


class Ledger:
    """Answers `evaluate` from a table of JSON answers and records who asked what."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def evaluate(self, fn: str, args: list[str], *, as_org: str) -> str:
        self.asked.append((fn, as_org))
        answer = self.answers[fn]
        if isinstance(answer, Exception):
            raise answer
        return json.dumps(answer)


def _client(answers: dict[str, object]) -> tuple[ContractClient, Ledger]:
    ledger = Ledger(answers)
    return ContractClient(ledger), ledger  # type: ignore[arg-type]  # the stub answers evaluate only


# the answers as the chaincode gives them (hub/billing/answers.py checks their shape)
USAGE_ANSWER = {"contract_id": "c1", "period": "2026-03", "status": "OPEN", "as_of": "2026-03-16T00:00:00Z",
                "aggregate": USAGE["aggregate"],
                "cost": {**USAGE["cost"], "currency": "EUR", "subtotal": "150.00", "tax": "0.00",
                         "tax_rate": None, "tax_category": None, "readings": 3, "readings_digest": "d"}}
PREPAID_ANSWER = {"contract_id": "c1", "currency": "EUR", "balance": "500.00", "movements": [
    {"id": "t1", "kind": "top_up", "amount": "500.00", "tx_id": "tx1", "at": "2026-02-01T00:00:00Z"}]}
RUNNING_ANSWER = {"contract_id": "c1", "period": "2026-02", "running": {"drawn": "150.00"},
                  "billing_threshold": "100.00", "interim_due": False}
INVOICE_ANSWER = {"id": "inv-c1-2026-03", "type": "invoice", "contract_id": "c1", "period": "2026-03",
                  "currency": "EUR", "status": "PREVIEW", "provider": "P1", "customer": "C1", "lines": [],
                  "subtotal": "0.00", "tax": "0.00", "total": "0.00", "paid": "0.00", "readings": 0,
                  "readings_digest": "d", "issued_at": "2026-03-16T00:00:00Z", "tx_id": "preview"}


def test_usage_report_adds_forecast_prepaid_and_billing_only_when_they_apply() -> None:
    from chaincode.errors import ChaincodeError
    from hub.billing.usage import usage_report
    from hub.errors import HubError
    from hub.ledger.base import ChaincodeRejected

    now = dt.datetime(2026, 3, 16, tzinfo=UTC)
    contract = {**CONTRACT, "minimum_commitment": None, "provider": "P1", "customer": "C1"}
    unfunded = ChaincodeRejected(ChaincodeError("invalid_argument", "no prepaid"))
    client, _ = _client({"GetUsage": USAGE_ANSWER, "GetPrepaid": unfunded})
    report = usage_report(client, contract, None, "C1", now)
    assert (report["contract_id"], report["period"]) == ("c1", "2026-03")
    assert report["forecast"]["total"] == "308.00"
    assert "prepaid" not in report and "billing" not in report
    funded, _ = _client({"GetUsage": USAGE_ANSWER, "GetPrepaid": PREPAID_ANSWER,
                         "GetRunning": RUNNING_ANSWER})
    report = usage_report(funded, {**contract, "billing_threshold": "100.00"}, "2026-02", "C1", now)
    assert report["period"] == "2026-02" and report["forecast"] is None  # a past period: no forecast
    assert report["prepaid"]["undrawn"] == "0.00" and report["billing"]["threshold"] == "100.00"
    for unusable in (None, ["not", "an", "object"], {**USAGE_ANSWER, "cost": None}):
        with pytest.raises(HubError) as refused:
            usage_report(_client({"GetUsage": unusable})[0], contract, None, "C1", now)
        assert (refused.value.status, refused.value.code) == (502, "unexpected_ledger_answer")


def test_invoice_preview_is_asked_as_a_party() -> None:
    from hub.billing.usage import invoice_preview

    now = dt.datetime(2026, 3, 16, tzinfo=UTC)
    contract = {**CONTRACT, "provider": "P1", "customer": "C1"}
    for org, asked_as in (("C1", "C1"), ("P1", "P1"), ("AuditorMSP", "P1")):
        answer = {"contract_id": "c1", "period": "2026-03", "as_of": "2026-03-16T00:00:00Z", "status": "OPEN",
                  "invoice": INVOICE_ANSWER}
        client, ledger = _client({"PreviewInvoice": answer, "GetUsage": USAGE_ANSWER})
        preview = invoice_preview(client, contract, "2026-03", org, now)
        assert preview["status"] == "OPEN" and preview["forecast"]["total"] == "360.00"
        assert preview["invoice"] == INVOICE_ANSWER  # the chaincode's answer, as answered
        assert ledger.asked == [("PreviewInvoice", asked_as), ("GetUsage", asked_as)]
