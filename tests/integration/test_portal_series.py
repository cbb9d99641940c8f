"""The chart series from the daily aggregates (ADR 0044) on the real embedded ledger: the same numbers as
reading every reading, cumulative cost against the budget, the forecast band, per-asset shares, invoice
history, ETag and `since` for live updates, exactly-once folding, and the role views' JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.ledger.base import ChaincodeEvent
from hub.portal.series import daily_series
from hub.store.models import EventCheckpoint, UsageDay, UsageDayTx
from hub.store.usage_days import UsageDays
from tests.helpers.api import (
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import make_device_key, reading, recent

pytestmark = pytest.mark.integration
CONTRACT = "ctr-mri-001"
ASSETS = ["mri-berlin-01", "mri-berlin-02"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    ledger = embedded_ledger(tmp_path / "ledger")
    with hub_client(hub_settings(tmp_path), ledger, scheduler=False) as client:
        yield client, ledger
    ledger.close()


@pytest.fixture
def client(served: tuple[TestClient, Any]) -> TestClient:
    return served[0]


def send(client: TestClient, key: Any, message_id: str, readings: list[dict[str, Any]],
         device: str = ASSETS[0]) -> None:
    r = post_usage(client, usage(key, message_id, readings, device_id=device))
    assert r.status_code == 202, r.text


def last_month_usage(client: TestClient) -> tuple[Any, str]:
    """Two assets on one contract; last month's readings on days 3, 3, 20 (and a duplicate resent)."""
    key = make_device_key()
    setup_contract(client, key, assets=ASSETS, minimum_commitment=None)
    period, _ = last_month()
    send(client, key, "a1", [reading("a1-s", "scan", "2", ts(period, 3)),
                             reading("a1-h", "magnet_hours", "1.5", ts(period, 3, 11)),
                             reading("a1-p", "peak_kw", "40", ts(period, 3, 12))])
    send(client, key, "b1", [reading("b1-s", "scan", "1", ts(period, 3, 15)),
                             reading("b1-p", "peak_kw", "55", ts(period, 3, 16))], device=ASSETS[1])
    send(client, key, "a2", [reading("a2-s", "scan", "10", ts(period, 20)),
                             reading("a1-s", "scan", "2", ts(period, 3))])  # a1-s again: a duplicate
    return key, period


def test_series_from_aggregates_equals_the_series_from_every_reading(client: TestClient) -> None:
    _, period = last_month_usage(client)
    got = client.get(f"/v1/contracts/{CONTRACT}/usage/series?period={period}", headers=auth("tok-customer"))
    assert got.status_code == 200, got.text
    body = got.json()
    contract = client.get(f"/v1/contracts/{CONTRACT}", headers=auth("tok-customer")).json()
    readings = client.app.state.services.gateway.client.get_readings(
        CONTRACT, period, as_org="CustomerMSP").readings
    reference = daily_series(readings, contract["metrics"], contract["timezone"], period)
    assert body["days"] == reference["days"]
    for metric, data in reference["metrics"].items():
        mine = [None if v is None else Decimal(v) for v in body["metrics"][metric]["values"]]
        theirs = [None if v is None else Decimal(v) for v in data["values"]]
        assert mine == theirs, metric
    scans = body["metrics"]["scan"]["values"]
    assert Decimal(scans[2]) == 3 and Decimal(scans[19]) == 10  # the duplicate counted once
    assert Decimal(body["metrics"]["peak_kw"]["values"][2]) == 55  # max over both assets that day
    assert body["version"] > 0


def test_cumulative_cost_crosses_the_budget_on_the_day_it_should(client: TestClient) -> None:
    _, period = last_month_usage(client)
    url = f"/v1/contracts/{CONTRACT}/usage/cost-series?period={period}"
    before = client.get(url, headers=auth("tok-customer")).json()
    cumulative = [Decimal(v) for v in before["cumulative"]]  # an ended period: every day has a value
    usage_total = client.get(f"/v1/contracts/{CONTRACT}/usage?period={period}",
                             headers=auth("tok-customer")).json()["cost"]["total"]
    assert before["cost_to_date"] == usage_total and cumulative[-1] == Decimal(usage_total)
    assert cumulative == sorted(cumulative)
    assert cumulative[2] > cumulative[1] and cumulative[19] > cumulative[18]
    assert before["budget"] is None and before["budget_crossed_on"] is None and before["forecast"] is None
    budget = (cumulative[2] + cumulative[19]) / 2  # above day 3's cost, below day 20's
    r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"budget": str(budget)},
                   headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    after = client.get(url, headers=auth("tok-customer")).json()
    assert after["budget"] == str(budget) and after["budget_crossed_on"] == f"{period}-20"
    # the provider's budget is its own: none set, nothing crossed
    provider = client.get(url, headers=auth("tok-provider")).json()
    assert provider["budget"] is None and provider["budget_crossed_on"] is None


def test_running_period_has_a_forecast_band_to_period_end(client: TestClient) -> None:
    key = make_device_key()
    setup_contract(client, key, minimum_commitment=None)
    send(client, key, "n1", [reading("n1-s", "scan", "4", recent(30))])
    # both answers forecast from the same instant: a run-rate forecast moves with the clock, and two reads a
    # few milliseconds apart could differ in the last cent (seen once in make test)
    frozen = dt.datetime.now(dt.UTC)
    client.app.state.services.clock = lambda: frozen
    body = client.get(f"/v1/contracts/{CONTRACT}/usage/cost-series", headers=auth("tok-customer")).json()
    usage_now = client.get(f"/v1/contracts/{CONTRACT}/usage", headers=auth("tok-customer")).json()
    known = [i for i, v in enumerate(body["cumulative"]) if v is not None]
    today = known[-1]
    assert all(v is None for v in body["cumulative"][today + 1:])
    band = body["forecast"]
    assert body["forecast_total"] == usage_now["forecast"]["total"]
    assert band["line"][-1] == usage_now["forecast"]["total"]
    assert band["line"][today] == body["cumulative"][today] and band["line"][today - 1 if today else 0] in (
        None, body["cumulative"][today])
    for low, line, high in zip(band["low"][today:], band["line"][today:], band["high"][today:], strict=True):
        assert Decimal(low) <= Decimal(line) <= Decimal(high)


def test_per_asset_breakdown_and_invoice_history(client: TestClient) -> None:
    _, period = last_month_usage(client)
    assets = client.get(f"/v1/contracts/{CONTRACT}/usage/assets?period={period}",
                        headers=auth("tok-customer")).json()
    shares = {a["asset_id"]: a for a in assets["assets"]}
    assert set(shares) == set(ASSETS)
    assert Decimal(shares[ASSETS[0]]["metrics"]["scan"]) == 12
    assert Decimal(shares[ASSETS[1]]["metrics"]["scan"]) == 1
    assert shares[ASSETS[0]]["readings"] == 4 and shares[ASSETS[1]]["readings"] == 2
    assert assets["units"]["magnet_hours"] == "h"
    closed = client.post(f"/v1/contracts/{CONTRACT}/periods/{period}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    history = client.get(f"/v1/contracts/{CONTRACT}/invoice-history", headers=auth("tok-customer")).json()
    assert [(i["period"], i["total"]) for i in history["items"]] == [(period, closed.json()["total"])]


def test_etag_answers_304_until_a_reading_arrives_and_since_returns_only_changed_days(
        client: TestClient) -> None:
    key, period = last_month_usage(client)
    url = f"/v1/contracts/{CONTRACT}/usage/series?period={period}"
    first = client.get(url, headers=auth("tok-customer"))
    etag, version = first.headers["etag"], first.json()["version"]
    same = client.get(url, headers={**auth("tok-customer"), "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    send(client, key, "a3", [reading("a3-s", "scan", "5", ts(period, 25))])
    changed = client.get(url, headers={**auth("tok-customer"), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    delta = client.get(f"{url}&since={version}", headers=auth("tok-customer")).json()
    assert delta["partial"] is True and delta["days"] == [f"{period}-25"]
    assert delta["metrics"]["scan"]["values"] == ["5"] and delta["version"] > version
    bad = client.get(f"{url}&since=-1", headers=auth("tok-customer"))
    assert bad.status_code == 422


def test_a_usage_transaction_is_folded_exactly_once(served: tuple[TestClient, Any]) -> None:
    client, ledger = served
    last_month_usage(client)
    services = client.app.state.services
    days: UsageDays = services.usage_days
    days.catch_up()

    def snapshot() -> list[tuple[str, str, str]]:
        with services.db() as session:
            return sorted((r.day, r.device_id, r.aggregate) for r in session.query(UsageDay))

    before = snapshot()
    events = [e for e in ledger.events(0, timeout=0.1) if e.name == "UsageRecorded"]
    assert len(events) == 3
    for event in events:  # the stream replayed (a crash before the checkpoint, another process)
        assert days.apply(ChaincodeEvent(event.block, event.tx_id, event.name, event.payload)) == 0
    assert snapshot() == before
    rebuilt = UsageDays(services.gateway, services.db)
    with services.db.begin() as session:  # a database that never had the rows rebuilds them from block 0
        session.query(UsageDay).delete()
        session.query(UsageDayTx).delete()
        session.query(EventCheckpoint).filter_by(consumer="usage-days").delete()
    assert rebuilt.catch_up() == 6
    assert snapshot() == before


def test_other_orgs_see_none_of_it(client: TestClient) -> None:
    _, period = last_month_usage(client)
    for path in (f"/v1/contracts/{CONTRACT}/usage/series", f"/v1/contracts/{CONTRACT}/usage/cost-series",
                 f"/v1/contracts/{CONTRACT}/usage/assets", f"/v1/contracts/{CONTRACT}/invoice-history",
                 f"/v1/contracts/{CONTRACT}/readings.csv?period={period}"):
        for token in ("tok-other-customer", "tok-other-provider"):
            r = client.get(path, headers=auth(token))
            assert r.status_code == 404 and r.json()["code"] == "unknown_contract", (path, token, r.text)
        assert client.get(path, headers=auth("tok-device")).status_code == 403
    overview = client.get("/v1/portal/provider", headers=auth("tok-other-provider")).json()
    assert overview["contracts"] == []
    assert client.get("/v1/portal/provider", headers=auth("tok-customer")).status_code == 403
    assert client.get("/v1/portal/audit", headers=auth("tok-provider")).status_code == 403
    closed = client.post(f"/v1/contracts/{CONTRACT}/periods/{period}/close", headers=auth("tok-operator"))
    r = client.post(f"/v1/invoices/{closed.json()['id']}/verification", headers=auth("tok-other-customer"))
    assert r.status_code == 404


def test_provider_overview_and_auditor_verification(client: TestClient) -> None:
    _, period = last_month_usage(client)
    closed = client.post(f"/v1/contracts/{CONTRACT}/periods/{period}/close", headers=auth("tok-operator"))
    invoice = closed.json()
    overview = client.get("/v1/portal/provider", headers=auth("tok-provider")).json()
    [row] = overview["contracts"]
    assert row["id"] == CONTRACT and row["invoiced"] == invoice["total"] and row["invoices"] == 1
    assert [o["id"] for o in row["open"]] == [invoice["id"]] and row["open_total"] == invoice["total"]
    assert row["overdue"] == [] and row["dead_letters"] == [] and row["alerts"] == 0
    audit = client.get("/v1/portal/audit", headers=auth("tok-auditor")).json()
    assert [(i["id"], i["verification"]) for i in audit["items"]] == [(invoice["id"], "unverified")]
    report = client.post(f"/v1/invoices/{invoice['id']}/verification", headers=auth("tok-auditor"))
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is True and body["invoice_id"] == invoice["id"] and body["checked"]
    assert "VERIFIED" in body["summary"]
    audit = client.get("/v1/portal/audit", headers=auth("tok-auditor")).json()
    assert audit["items"][0]["verification"] == "verified"
    missing = client.post("/v1/invoices/inv-nope/verification", headers=auth("tok-auditor"))
    assert missing.status_code == 404


def test_csv_export_has_every_reading_of_the_period(client: TestClient) -> None:
    _, period = last_month_usage(client)
    r = client.get(f"/v1/contracts/{CONTRACT}/readings.csv?period={period}", headers=auth("tok-customer"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="{CONTRACT}-{period}-readings.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 6 and {row["device_id"] for row in rows} == set(ASSETS)
    assert sum(Decimal(row["quantity"]) for row in rows if row["metric"] == "scan") == 13
    bad = client.get(f"/v1/contracts/{CONTRACT}/readings.csv?period=2026-13", headers=auth("tok-customer"))
    assert bad.status_code == 422


def test_the_portal_bench_runs_and_both_ways_agree() -> None:
    """`python -m hub.portal.bench` on a small period: it prints figures (never asserted) and checks that
    the aggregates give the same series as reading every reading."""
    from hub.portal.bench import run

    result = run(2_000, repeat=1)
    assert result["readings"] == 2_000 and result["folded"] == 2_000 and result["same_answer"] is True
