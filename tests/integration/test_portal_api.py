"""The portal's data API on the real embedded ledger: daily series, alert rules, alerts raised once per
threshold, visibility, and webhook signatures."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from hub.api.problems import ApiError
from hub.portal.alerts import crossings, sign_webhook, usage_crossings, verify_webhook
from hub.portal.router import STATIC, portal_static
from tests.helpers.api import (
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    setup_contract,
)
from tests.helpers.chaincode import make_device_key, sample_contract
from tests.helpers.portal import send

pytestmark = pytest.mark.integration
CONTRACT = "ctr-mri-001"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ledger = embedded_ledger(tmp_path / "ledger")
    settings = hub_settings(tmp_path)
    with hub_client(settings, ledger, scheduler=False) as c:
        yield c
    ledger.close()


def test_daily_series_sums_readings_in_local_days(client: TestClient) -> None:
    key = make_device_key()
    setup_contract(client, key)
    send(client, key, "m1", "3")
    send(client, key, "m2", "2", "1.25")
    r = client.get(f"/v1/contracts/{CONTRACT}/usage/series", headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    body = r.json()
    scans = [Decimal(v) for v in body["metrics"]["scan"]["values"] if v is not None]
    hours = [Decimal(v) for v in body["metrics"]["magnet_hours"]["values"] if v is not None]
    assert sum(scans) == 5 and sum(hours) == Decimal("1.75")
    assert len(body["days"]) in (28, 29, 30, 31)
    assert body["metrics"]["peak_kw"]["values"] == [None] * len(body["days"])


def test_series_and_rules_are_not_visible_to_other_orgs(client: TestClient) -> None:
    setup_contract(client, make_device_key())
    for path in (
        f"/v1/contracts/{CONTRACT}/usage/series",
        f"/v1/contracts/{CONTRACT}/alert-rules",
        f"/v1/alerts?contract={CONTRACT}",
    ):
        r = client.get(path, headers=auth("tok-other-customer"))
        assert r.status_code == 404 and r.json()["code"] == "unknown_contract", (path, r.text)
    r = client.put(
        f"/v1/contracts/{CONTRACT}/alert-rules", json={"budget": "1"}, headers=auth("tok-other-customer")
    )
    assert r.status_code == 404
    r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"budget": "1"}, headers=auth("tok-device"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"budget": "-5"},
        {"budget": "1e9"},
        {"usual_level": "abc"},
        {"webhooks": [{"url": "ftp://x", "secret": "0123456789abcdef"}]},
        {"webhooks": [{"url": "https://x.example/h", "secret": "short"}]},
        {"budjet": "100"},  # a misspelt field is refused, not silently ignored (the rule would reset)
    ],
)
def test_bad_rules_are_refused_and_change_nothing(client: TestClient, body: dict) -> None:
    setup_contract(client, make_device_key())
    r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json=body, headers=auth("tok-customer"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request", r.text
    rules = client.get(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer")).json()
    assert rules["budget"] is None and rules["webhooks"] == []


def test_budget_crossing_raises_each_alert_once(client: TestClient) -> None:
    key = make_device_key()
    setup_contract(client, key, minimum_commitment=None)
    send(client, key, "m1", "1")
    # a budget far above any forecast: nothing to say
    r = client.put(
        f"/v1/contracts/{CONTRACT}/alert-rules",
        json={"budget": "100000000", "webhooks": [{"url": "https://erp.example/hook", "secret": "s" * 20}]},
        headers=auth("tok-customer"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["webhooks"] == [{"url": "https://erp.example/hook", "secret_set": True}]
    assert "s" * 20 not in r.text  # a webhook secret is write-only
    assert client.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"] == []
    # usage grows and the budget shrinks below the forecast: both budget thresholds fire, once
    send(client, key, "m2", "40")
    forecast = Decimal(
        client.get(f"/v1/contracts/{CONTRACT}/usage", headers=auth("tok-customer")).json()["forecast"][
            "total"
        ]
    )
    r = client.put(
        f"/v1/contracts/{CONTRACT}/alert-rules",
        json={"budget": str(forecast - 1)},
        headers=auth("tok-customer"),
    )
    assert r.status_code == 200, r.text
    alerts = client.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"]
    assert sorted(a["kind"] for a in alerts) == ["budget_100", "budget_80"]
    services = client.app.state.services
    for _ in range(3):  # the scheduled job runs again and again: nothing new
        assert services.alerts.evaluate_all() == []
    assert len(client.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"]) == 2
    # the provider has no rule: it sees none of the customer's alerts; an auditor sees them all
    assert client.get("/v1/alerts", headers=auth("tok-provider")).json()["alerts"] == []
    assert len(client.get("/v1/alerts", headers=auth("tok-auditor")).json()["alerts"]) == 2


def test_thresholds() -> None:
    kinds = lambda **kw: [c.kind for c in crossings(currency="EUR", **kw)]  # noqa: E731
    assert kinds(forecast=Decimal(79), budget=Decimal(100), usual=None, elapsed=Decimal("0.5")) == []
    assert kinds(forecast=Decimal(80), budget=Decimal(100), usual=None, elapsed=Decimal("0.5")) == [
        "budget_80"
    ]
    assert kinds(forecast=Decimal(100), budget=Decimal(100), usual=None, elapsed=Decimal("0.5")) == [
        "budget_80",
        "budget_100",
    ]
    assert kinds(forecast=Decimal(150), budget=None, usual=Decimal(100), elapsed=Decimal("0.1")) == [
        "overrun_150"
    ]
    # an under-run is only called once a quarter of the period has passed
    assert kinds(forecast=Decimal(10), budget=None, usual=Decimal(100), elapsed=Decimal("0.2")) == []
    assert kinds(forecast=Decimal(10), budget=None, usual=Decimal(100), elapsed=Decimal("0.3")) == [
        "underrun_50"
    ]


def test_webhook_signature() -> None:
    body = json.dumps({"type": "alert.raised"}).encode()
    headers = sign_webhook("a-long-shared-secret", body, timestamp=1_800_000_000)
    assert verify_webhook("a-long-shared-secret", body, headers, now=1_800_000_010)
    assert not verify_webhook("another-secret-value", body, headers, now=1_800_000_010)
    assert not verify_webhook("a-long-shared-secret", body + b" ", headers, now=1_800_000_010)
    assert not verify_webhook("a-long-shared-secret", body, headers, now=1_800_000_000 + 301)  # stale
    assert not verify_webhook("a-long-shared-secret", body, {}, now=1_800_000_000)
    forged = {**headers, "X-LedgerHub-Signature": "v1=\u00e9" + headers["X-LedgerHub-Signature"][4:]}
    assert not verify_webhook("a-long-shared-secret", body, forged, now=1_800_000_010)  # no crash either
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_webhook("a-long-shared-secret", body, lower, now=1_800_000_010)


def test_portal_page_is_served_without_a_build_step(client: TestClient) -> None:
    page = client.get("/portal")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<label for="token">' in page.text
    assert client.get("/portal/static/app.js").status_code == 200
    assert client.get("/portal/static/missing.js").status_code == 404


def test_static_route_serves_nothing_outside_its_folder(tmp_path: Path) -> None:
    # Over HTTP a "../" is normalised away by the client and a "/" never matches {name}, so the guard in
    # portal_static is called directly with the names that would escape the folder.
    outside = tmp_path / "outside.js"
    outside.write_text("alert(1)")
    hops = "../" * len(STATIC.parts)
    for name in (str(outside), hops + str(outside).lstrip("/"), "..", "index.html", "missing.js"):
        with pytest.raises(ApiError) as exc:
            portal_static(name)
        assert (exc.value.status, exc.value.code) == (404, "not_found"), name
    assert Path(portal_static("app.js").path) == STATIC / "app.js"


def _a_third_into_this_month(timezone: str) -> dt.datetime:
    """Now, or a third of the way into the current month (contract timezone) if that is later: an under-run
    is only called once a quarter of the period has passed, and the test must not depend on today's date."""
    now = dt.datetime.now(dt.UTC)
    local = now.astimezone(ZoneInfo(timezone))
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return max(now, (start + (end - start) / 3).astimezone(dt.UTC))


@contextmanager
def _hub_a_third_into_the_month(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    """A hub whose clock is past the first quarter of the month (under-runs can be called), with the
    sample contract active and its device key."""
    at = _a_third_into_this_month(sample_contract()["timezone"])
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        with hub_client(hub_settings(tmp_path), ledger, scheduler=False, clock=lambda: at) as client:
            key = make_device_key()
            setup_contract(client, key, minimum_commitment=None)
            yield client, key
    finally:
        ledger.close()


def test_usual_level_overrun_and_underrun_are_raised_once_per_party(tmp_path: Path) -> None:
    with _hub_a_third_into_the_month(tmp_path) as (client, key):
        send(client, key, "m1", "40")
        usage = client.get(f"/v1/contracts/{CONTRACT}/usage", headers=auth("tok-customer")).json()
        assert Decimal(usage["forecast"]["elapsed_fraction"]) >= Decimal("0.25")
        forecast = Decimal(usage["forecast"]["total"])
        # the customer usually spends half of this forecast: an over-run (forecast = 200% of usual)
        r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"usual_level": str(forecast / 2)},
                       headers=auth("tok-customer"))
        assert r.status_code == 200, r.text
        # the provider usually bills three times as much: an under-run (forecast = 33% of usual)
        r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"usual_level": str(forecast * 3)},
                       headers=auth("tok-provider"))
        assert r.status_code == 200, r.text
        for _ in range(3):  # the scheduled job runs again and again: nothing new
            assert client.app.state.services.alerts.evaluate_all() == []
        mine = client.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"]
        theirs = client.get("/v1/alerts", headers=auth("tok-provider")).json()["alerts"]
        assert [a["kind"] for a in mine] == ["overrun_150"]
        assert [a["kind"] for a in theirs] == ["underrun_50"]
        assert Decimal(mine[0]["forecast_total"]) == forecast == Decimal(theirs[0]["forecast_total"])
        assert Decimal(mine[0]["threshold"]) == forecast / 2 * Decimal("1.5")
        assert Decimal(theirs[0]["threshold"]) == forecast * 3 * Decimal("0.5")
        assert "usual" in mine[0]["message"] and "less than half" in theirs[0]["message"]


def test_usual_use_per_metric_raises_usage_alerts_once_per_metric(tmp_path: Path) -> None:
    """A usual level of *use* (quantities per metric), beside the usual spend: scans run far above the
    usual, magnet hours far below, each raised once, for the party that set the rule only."""
    with _hub_a_third_into_the_month(tmp_path) as (client, key):
        send(client, key, "m1", scans="30", hours="0.5")
        usage = client.get(f"/v1/contracts/{CONTRACT}/usage", headers=auth("tok-customer")).json()
        metrics = usage["forecast"]["metrics"]
        scale = 1 / Decimal(usage["forecast"]["elapsed_fraction"])
        # sums scale with the elapsed part of the month; a maximum is forecast as it stands
        assert Decimal(metrics["scan"]) == pytest.approx(Decimal(30) * scale, rel=Decimal("0.001"))
        assert Decimal(metrics["peak_kw"]) == 0
        cents = Decimal("0.01")  # a rule takes at most 6 decimals: a person would type round figures
        usual = {"scan": str((Decimal(metrics["scan"]) / 2).quantize(cents)),
                 "magnet_hours": str((Decimal(metrics["magnet_hours"]) * 4).quantize(cents))}
        r = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"usual_usage": usual},
                       headers=auth("tok-customer"))
        assert r.status_code == 200, r.text
        assert r.json()["usual_usage"] == usual
        for _ in range(3):
            assert client.app.state.services.alerts.evaluate_all() == []
        alerts = client.get("/v1/alerts", headers=auth("tok-customer")).json()["alerts"]
        assert sorted((a["kind"], a["metric"]) for a in alerts) == [
            ("usage_overrun_150", "scan"), ("usage_underrun_50", "magnet_hours")]
        scan = next(a for a in alerts if a["metric"] == "scan")
        assert Decimal(scan["forecast_total"]) == Decimal(metrics["scan"])  # a quantity of scans, not money
        assert Decimal(scan["threshold"]) == Decimal(usual["scan"]) * Decimal("1.5")
        assert client.get("/v1/alerts", headers=auth("tok-provider")).json()["alerts"] == []
        # a metric the contract does not have is refused, and the rule stays as it was
        bad = client.put(f"/v1/contracts/{CONTRACT}/alert-rules", json={"usual_usage": {"coffee": "3"}},
                         headers=auth("tok-customer"))
        assert bad.status_code == 400 and bad.json()["code"] == "unknown_metric"
        rules = client.get(f"/v1/contracts/{CONTRACT}/alert-rules", headers=auth("tok-customer")).json()
        assert rules["usual_usage"] == usual


def test_usage_thresholds() -> None:
    def kinds(forecast: dict[str, str], usual: dict[str, str], elapsed: str) -> list[tuple[str, str | None]]:
        found = usage_crossings(forecast={k: Decimal(v) for k, v in forecast.items()},
                                usual={k: Decimal(v) for k, v in usual.items()}, elapsed=Decimal(elapsed))
        return [(c.kind, c.metric) for c in found]

    assert kinds({"scan": "149"}, {"scan": "100"}, "0.5") == []
    assert kinds({"scan": "150"}, {"scan": "100"}, "0.1") == [("usage_overrun_150", "scan")]
    assert kinds({"scan": "10"}, {"scan": "100"}, "0.2") == []  # too early in the period to call it
    assert kinds({"scan": "50"}, {"scan": "100"}, "0.3") == [("usage_underrun_50", "scan")]
    assert kinds({"scan": "10"}, {"scan": "0", "hours": "5"}, "0.5") == []  # no usual level, no forecast
