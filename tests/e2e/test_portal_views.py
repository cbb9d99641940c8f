"""Every role's portal view in headless Chromium against a real hub on the embedded ledger (ADR 0044).

One hub holds a story: a contract with two scanners, last month's readings closed into an invoice with
ERP postings and a payment, this month's readings on several days, a customer budget the cost crosses.
The tests read the charts through Chart.js's own objects (points, axis titles, ticks), check the budget
crossing, watch a new reading move the chart without a reload, run axe-core in the page, and keep
screenshots of each view at desktop and phone width (test-artifacts/portal-*.png).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from hub.api.app import create_app
from tests.helpers.api import embedded_ledger, hub_settings, last_month, ts
from tests.helpers.browser import chromium, serve
from tests.helpers.chaincode import make_device_key, reading, sample_asset, sample_contract, signed_message

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CONTRACT = "ctr-mri-001"
ASSETS = ["mri-berlin-01", "mri-berlin-02"]
WAIT = 60  # a wait, never an assertion on time
AXE = Path(__file__).resolve().parents[2] / "hub/portal/assets/node_modules/axe-core/axe.min.js"
PHONE = (390, 844)
DESKTOP = (1280, 1000)


def api(base: str, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)


def this_month_days() -> list[str]:
    """Timestamps at 10:00 Berlin time on each day of this month up to today (never in the future)."""
    tz = ZoneInfo("Europe/Berlin")
    now = dt.datetime.now(tz)
    out = []
    for day in range(1, now.day + 1):
        moment = dt.datetime(now.year, now.month, day, 10, tzinfo=tz)
        out.append(min(moment, now - dt.timedelta(minutes=5)).isoformat())
    return out


class Story:
    def __init__(self, base: str, ledger: Any) -> None:
        self.base, self.ledger = base, ledger
        self.key = make_device_key("portal-views")
        self.n = 0

    def send(self, readings: list[dict[str, Any]], device: str = ASSETS[0]) -> None:
        self.n += 1
        message = signed_message(self.key, readings, device_id=device, message_id=f"m{self.n}")
        r = api(self.base, "tok-device", "POST", "/v1/usage", message)
        assert r.status_code == 202, r.text

    def build(self) -> None:
        period, start = last_month()
        for asset in ASSETS:
            assert api(self.base, "tok-provider", "POST", "/v1/assets",
                       sample_asset(self.key, asset)).status_code == 201
        contract = sample_contract(start=start, minimum_commitment=None, assets=ASSETS)
        assert api(self.base, "tok-provider", "POST", "/v1/contracts", contract).status_code == 201
        assert api(self.base, "tok-customer", "POST", f"/v1/contracts/{CONTRACT}/accept").status_code == 200
        for day in (2, 9, 16, 23):
            self.send([reading(f"l{day}-s", "scan", str(day // 2 + 1), ts(period, day)),
                       reading(f"l{day}-h", "magnet_hours", "1.25", ts(period, day, 12))])
        self.send([reading("l-b", "scan", "3", ts(period, 12))], device=ASSETS[1])
        closed = api(self.base, "tok-operator", "POST", f"/v1/contracts/{CONTRACT}/periods/{period}/close")
        assert closed.status_code == 200, closed.text
        self.invoice = closed.json()
        for fn, body in (
            ("RecordErpPosting", {"invoice_id": self.invoice["id"], "target": "provider",
                                  "system": "sap-soap", "document_id": "5100000001", "delivery_id": "dlv-p"}),
            ("RecordErpPosting", {"invoice_id": self.invoice["id"], "target": "customer",
                                  "system": "oracle-rest", "document_id": "300100187050001",
                                  "delivery_id": "dlv-c"}),
            ("RecordPayment", {"invoice_id": self.invoice["id"], "payment_id": "pay-77", "amount": "100.00",
                               "source": "sap-soap"}),
        ):
            self.ledger.submit(fn, [json.dumps(body)], as_org="ProviderMSP")
        for i, moment in enumerate(this_month_days()):
            self.send([reading(f"c{i}-s", "scan", str(2 + 3 * i), moment),
                       reading(f"c{i}-h", "magnet_hours", "0.5", moment)], device=ASSETS[i % 2])
        cost = api(self.base, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/usage/cost-series").json()
        known = [Decimal(v) for v in cost["cumulative"] if v is not None]
        # a budget the cost crosses on the last day with readings (the first day's cost alone when today
        # is the 1st): below today's cost, at or above the day before's
        self.budget = (known[-2] + known[-1]) / 2 if len(known) > 1 else known[-1] / 2
        r = api(self.base, "tok-customer", "PUT", f"/v1/contracts/{CONTRACT}/alert-rules",
                {"budget": str(self.budget.quantize(Decimal("0.01")))})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("portal-views")
    ledger = embedded_ledger(tmp / "ledger")
    app = create_app(hub_settings(tmp), ledger, scheduler=False)
    with serve(app) as base:
        s = Story(base, ledger)
        s.build()
        yield s
    ledger.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path) as driver:
        driver.set_window_size(*DESKTOP)
        yield driver


def sign_in(driver: Any, base: str, token: str, ready: str) -> None:
    driver.get(base + "/portal")
    field = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    field.send_keys(Keys.ENTER)  # the keyboard, not a click
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, ready).is_displayed())


def chart(driver: Any, chart_id: str) -> dict[str, Any]:
    """What Chart.js holds for a figure: points per dataset, labels, axis titles and tick counts."""
    return driver.execute_script("""
        const canvas = document.getElementById(arguments[0] + '-canvas');
        const c = canvas && Chart.getChart(canvas);
        if (!c) return null;
        return {labels: c.data.labels, datasets: c.data.datasets.map(d => ({label: d.label, data: d.data,
                  points: d.data.filter(v => v !== null).length})),
                x: c.options.scales.x.title.text, y: c.options.scales.y.title.text,
                xticks: c.scales.x.ticks.length, yticks: c.scales.y.ticks.length,
                label: canvas.getAttribute('aria-label')};""", chart_id)


def wait_chart(driver: Any, chart_id: str, test: Any = bool) -> dict[str, Any]:
    return WebDriverWait(driver, WAIT).until(lambda d: (c := chart(d, chart_id)) and test(c) and c)


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core (pinned in hub/portal/assets, read from disk: nothing fetched) run in the page."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']})
           .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                  targets: v.nodes.map(n => n.target.join(' '))}))))
           .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), targets: []}]));""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def settle(driver: Any) -> None:
    """Let Chart.js lay the charts out for the current width before a picture is taken."""
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (window.Chart) Object.values(Chart.instances).forEach(c => c.resize());
        requestAnimationFrame(() => requestAnimationFrame(() => done(true)));""")


def full_screenshot(driver: Any, path: Path) -> None:
    settle(driver)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")  # the capture lays out without a scrollbar
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    import base64

    path.write_bytes(base64.b64decode(shot["data"]))


def both_widths(driver: Any, name: str, artifacts: Path, ready: Any) -> None:
    """Screenshots at desktop and phone width; on the phone nothing is wider than the screen."""
    full_screenshot(driver, artifacts / f"portal-{name}.png")
    driver.set_window_size(*PHONE)
    WebDriverWait(driver, WAIT).until(ready)

    def overflow(d: Any) -> int:
        return int(d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"))

    # Chart.js resizes its canvases from a ResizeObserver after the window shrinks, so right after the resize
    # the page can still be the desktop width (720 px too wide, once in CI); wait for the layout, bounded
    with contextlib.suppress(TimeoutException):
        WebDriverWait(driver, WAIT).until(lambda d: overflow(d) <= 1)
    assert overflow(driver) <= 1, f"{name}: the page is {overflow(driver)}px wider than a phone screen"
    full_screenshot(driver, artifacts / f"portal-{name}-phone.png")
    assert not axe_violations(driver), name  # the phone layout too
    driver.set_window_size(*DESKTOP)


def test_customer_view_charts_budget_crossing_and_accessibility(story: Story, browser: Any,
                                                                artifacts_dir: Path) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-customer", "contracts")
    driver.get(f"{story.base}/portal#/contracts/{CONTRACT}")
    driver.refresh()
    series = api(story.base, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/usage/series").json()
    cost = api(story.base, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/usage/cost-series").json()
    days_with_scans = sum(v is not None for v in series["metrics"]["scan"]["values"])

    usage = wait_chart(driver, "chart-usage-scan", lambda c: c["datasets"][0]["points"] == days_with_scans)
    assert len(usage["labels"]) == len(series["days"]) and usage["x"].startswith("Day of ")
    assert usage["y"] == "scan" and usage["xticks"] > 0 and usage["yticks"] > 0

    costs = wait_chart(driver, "chart-cost", lambda c: any(d["label"] == "Budget" for d in c["datasets"]))
    sets = {d["label"]: d for d in costs["datasets"]}
    assert sets["Cost to date"]["points"] == sum(v is not None for v in cost["cumulative"])
    assert costs["y"] == "EUR" and costs["x"].startswith("Day of ")
    assert {"Forecast", "Forecast range", "Forecast range (low)"} <= set(sets)
    # the cumulative cost line crosses the budget line exactly on the day the API says, and not before
    crossed = cost["budget_crossed_on"]
    assert crossed is not None
    index = cost["days"].index(crossed)
    line, budget = sets["Cost to date"]["data"], sets["Budget"]["data"]
    assert line[index] > budget[index]
    assert all(v is None or v <= b for v, b in zip(line[:index], budget[:index], strict=True))
    assert driver.find_element(By.ID, "chart-cost").get_attribute("data-crossed") == crossed
    assert f"exceeded on {crossed}" in driver.find_element(By.ID, "chart-cost-summary").text

    history = wait_chart(driver, "chart-history", lambda c: c["datasets"][0]["points"] == 1)
    assert history["labels"] == [story.invoice["period"]] and history["x"] == "Billing period"
    assets = wait_chart(driver, "chart-assets")
    assert sorted(assets["labels"]) == ASSETS and assets["x"] == "Asset"
    # every chart has a text summary and a table of the same numbers
    for fig in driver.find_elements(By.CSS_SELECTOR, "figure[data-chart]"):
        assert fig.find_element(By.CSS_SELECTOR, ".summary").text
        assert fig.find_elements(By.CSS_SELECTOR, "details table tbody tr") or "No " in fig.text

    violations = axe_violations(driver)
    assert not violations, violations
    both_widths(driver, "customer", artifacts_dir, lambda d: chart(d, "chart-cost"))


def test_invoice_detail_shows_lines_tax_postings_payments_and_verifies(story: Story, browser: Any,
                                                                       artifacts_dir: Path) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-customer", "contracts")
    invoice = story.invoice
    driver.get(f"{story.base}/portal#/invoices/{invoice['id']}")
    driver.refresh()
    WebDriverWait(driver, WAIT).until(lambda d: "pay-77" in d.find_element(By.ID, "invoice-payments").text)
    lines = driver.find_elements(By.CSS_SELECTOR, "#invoice-lines tr")
    assert len(lines) == len(invoice["lines"])
    totals = driver.find_element(By.ID, "invoice-totals").text
    assert "Tax (19 %" in totals and f"{Decimal(invoice['total']):,} EUR" in totals
    postings = driver.find_element(By.ID, "invoice-postings").text
    assert "sap-soap document 5100000001" in postings and "oracle-rest document 300100187050001" in postings
    driver.find_element(By.ID, "invoice-verify").click()
    WebDriverWait(driver, WAIT).until(lambda d: "verified" in d.find_element(By.ID, "invoice-report").text)
    assert driver.find_elements(By.CSS_SELECTOR, "#invoice-report table.checked tbody tr")
    assert not axe_violations(driver)
    both_widths(driver, "invoice", artifacts_dir, lambda d: d.find_element(By.ID, "invoice-lines"))


def test_provider_view_all_contracts(story: Story, browser: Any, artifacts_dir: Path) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-provider", "provider")
    overview = api(story.base, "tok-provider", "GET", "/v1/portal/provider").json()
    row = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-contract='{CONTRACT}']"))[0]
    [mine] = overview["contracts"]
    assert f"{Decimal(mine['usage_to_date']):,} EUR" in row.text and story.invoice["id"] in row.text
    bars = wait_chart(driver, "chart-provider")
    assert bars["labels"] == [CONTRACT] and [d["points"] for d in bars["datasets"]] == [1, 1]
    assert bars["x"] == "Contract" and bars["y"] == "EUR"
    assert not axe_violations(driver)
    both_widths(driver, "provider", artifacts_dir, lambda d: chart(d, "chart-provider"))


def test_auditor_verifies_an_invoice_server_side(story: Story, browser: Any, artifacts_dir: Path) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-auditor", "audit")
    states = wait_chart(driver, "chart-audit")
    assert states["labels"] == [story.invoice["period"]] and states["x"] == "Billing period"
    assert states["y"] == "Invoices" and states["yticks"] > 0
    assert [d["label"] for d in states["datasets"]] == ["verified", "unverified", "failed"]
    assert sum(d["points"] for d in states["datasets"]) == 3  # one period, a count per state
    button = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"button[data-verify='{story.invoice['id']}']"))
    button.send_keys(Keys.ENTER)  # keyboard again
    WebDriverWait(driver, WAIT).until(lambda d: "verified" in d.find_element(By.ID, "audit-report").text)
    checked = driver.find_elements(By.CSS_SELECTOR, "#audit-report table.checked tbody tr")
    assert len(checked) >= 3  # signatures, blocks, readings, ... each counted
    row = f"tr[data-invoice='{story.invoice['id']}']"
    WebDriverWait(driver, WAIT).until(lambda d: "verified" in d.find_element(By.CSS_SELECTOR, row).text)
    # the chart counts the invoice as verified, without a reload
    wait_chart(driver, "chart-audit", lambda c: [d["data"] for d in c["datasets"]] == [[1], [0], [0]])
    assert not axe_violations(driver)
    both_widths(driver, "auditor", artifacts_dir, lambda d: d.find_element(By.ID, "audit-report").text)


def test_other_orgs_never_see_the_story(story: Story, browser: Any) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-other-provider", "provider")
    WebDriverWait(driver, WAIT).until(
        lambda d: "No contracts visible" in d.find_element(By.ID, "provider-rows").text)
    driver.get(f"{story.base}/portal#/contracts/{CONTRACT}")
    driver.refresh()
    WebDriverWait(driver, WAIT).until(
        lambda d: "unknown contract" in d.find_element(By.ID, "contract-rows").text.lower())
    page = driver.find_element(By.TAG_NAME, "body").text
    assert story.invoice["id"] not in page and "mri-berlin" not in page
    for path in ("/v1/portal/provider", f"/v1/contracts/{CONTRACT}/usage/cost-series"):
        body = api(story.base, "tok-other-provider", "GET", path).text
        assert CONTRACT not in body.replace(f"/v1/contracts/{CONTRACT}", "") or "unknown_contract" in body


def test_a_new_reading_moves_the_chart_without_reload(story: Story, browser: Any) -> None:
    driver = browser
    sign_in(driver, story.base, "tok-customer", "contracts")
    driver.get(f"{story.base}/portal#/contracts/{CONTRACT}")
    driver.refresh()
    before = wait_chart(driver, "chart-usage-scan", lambda c: c["datasets"][0]["points"] > 0)
    driver.execute_script("window.__sameDocument = true")  # gone if the page reloads
    polls = driver.execute_script("return performance.getEntriesByType('resource').length")
    story.send([reading("live-1", "scan", "1000", this_month_days()[-1])])
    summary = driver.find_element(By.ID, "chart-usage-scan-summary").text
    after = wait_chart(driver, "chart-usage-scan",
                       lambda c: c["datasets"][0]["data"] != before["datasets"][0]["data"])
    assert driver.execute_script("return window.__sameDocument") is True
    today = before["datasets"][0]["data"]
    changed = [i for i, (a, b) in enumerate(zip(today, after["datasets"][0]["data"], strict=True)) if a != b]
    assert len(changed) == 1 and after["datasets"][0]["data"][changed[0]] - (today[changed[0]] or 0) == 1000
    new_summary = lambda d: d.find_element(By.ID, "chart-usage-scan-summary").text  # noqa: E731
    WebDriverWait(driver, WAIT).until(lambda d: new_summary(d) != summary)
    # the live path asked for the changed days only (since=version), not the whole period again
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').slice(arguments[0]).map(e => e.name)", polls)
    assert any("usage/series" in u and "since=" in u for u in urls)
