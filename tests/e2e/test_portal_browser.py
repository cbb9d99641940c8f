"""The customer portal in headless Chromium against a real hub server on the embedded ledger.

A customer signs in with a token, sees the usage chart and cost to date change after new readings arrive,
downloads a proof, sees an alert; another customer never sees this customer's contract. A screenshot of each
main page is kept in test-artifacts/.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chaincode import creditor_ref
from hub.audit.verify import verify_bundle
from tests.helpers.browser import chromium
from tests.helpers.chaincode import (
    make_device_key,
    reading,
    recent,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CONTRACT = "ctr-mri-001"
WAIT = 60  # generous: a busy 2-core CI machine; a wait, never an assertion on time


def api(base: str, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def setup(base: str) -> Any:
    key = make_device_key("portal")
    from tests.helpers.api import last_month

    _, start = last_month()
    assert api(base, "tok-provider", "POST", "/v1/assets", sample_asset(key)).status_code == 201
    assert (
        api(
            base,
            "tok-provider",
            "POST",
            "/v1/contracts",
            sample_contract(start=start, minimum_commitment=None),
        ).status_code
        == 201
    )
    assert api(base, "tok-customer", "POST", f"/v1/contracts/{CONTRACT}/accept").status_code == 200
    return key


def send(base: str, key: Any, message_id: str, scans: str) -> None:
    message = signed_message(
        key, [reading(f"{message_id}-s", "scan", scans, recent(15))], message_id=message_id
    )
    r = api(base, "tok-device", "POST", "/v1/usage", message)
    assert r.status_code == 202, r.text


def sign_in(driver: Any, base: str, token: str) -> None:
    driver.get(base + "/portal")
    field = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    # each role's home: the contract list (customers), the business overview (providers)
    WebDriverWait(driver, WAIT).until(
        lambda d: any(d.find_element(By.ID, section).is_displayed() for section in ("contracts", "provider"))
    )


def open_contract(driver: Any, base: str) -> None:
    """The contract's page by its address (a hash change alone does not reload a page already open)."""
    driver.get(f"{base}/portal#/contracts/{CONTRACT}")
    driver.refresh()


def test_customer_journey(hub: str, tmp_path: Path, artifacts_dir: Path) -> None:
    key = setup(hub)
    send(hub, key, "m1", "2")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(downloads) as driver:
        sign_in(driver, hub, "tok-customer")
        WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.LINK_TEXT, CONTRACT))
        driver.save_screenshot(str(artifacts_dir / "portal-contracts.png"))
        driver.find_element(By.LINK_TEXT, CONTRACT).click()

        cost = lambda d: d.find_element(By.ID, "cost-to-date").text  # noqa: E731
        WebDriverWait(driver, WAIT).until(lambda d: cost(d) not in ("", "—"))
        before = cost(driver)
        chart = driver.find_element(By.CSS_SELECTOR, "figure[data-metric='scan'] canvas")
        assert "total 2 scan" in chart.get_attribute("aria-label")

        send(hub, key, "m2", "5")  # new readings arrive while the page is open
        WebDriverWait(driver, WAIT).until(lambda d: cost(d) != before)
        WebDriverWait(driver, WAIT).until(
            lambda d: (
                "total 7 scan"
                in d.find_element(By.CSS_SELECTOR, "figure[data-metric='scan'] canvas").get_attribute(
                    "aria-label"
                )
            )
        )
        driver.save_screenshot(str(artifacts_dir / "portal-contract.png"))

        # the customer sets a budget below the forecast: the warning shows up on the page
        forecast = api(hub, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/usage").json()["forecast"][
            "total"
        ]
        driver.find_element(By.ID, "rule-budget").send_keys(str(int(float(forecast)) // 2))
        driver.find_element(By.CSS_SELECTOR, "#rules-form button").click()
        WebDriverWait(driver, WAIT).until(lambda d: "budget" in d.find_element(By.ID, "alerts").text)
        driver.save_screenshot(str(artifacts_dir / "portal-alert.png"))

    # the period is closed (by the operator) and the invoice's proof is downloaded from the page
    from tests.helpers.api import last_month

    period, _ = last_month()
    closed = api(hub, "tok-operator", "POST", f"/v1/contracts/{CONTRACT}/periods/{period}/close")
    assert closed.status_code in (200, 201), closed.text
    invoice_id = closed.json()["id"]
    with chromium(downloads) as driver:
        sign_in(driver, hub, "tok-customer")
        driver.get(f"{hub}/portal#/contracts/{CONTRACT}")
        button = WebDriverWait(driver, WAIT).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"button[data-proof='{invoice_id}']")
        )
        driver.save_screenshot(str(artifacts_dir / "portal-invoices.png"))
        button.click()
        target = downloads / f"{invoice_id}.proof.json"
        # complete once Chromium has renamed the .crdownload file and the JSON parses
        bundle = WebDriverWait(driver, WAIT).until(lambda d: _json_or_none(target))
    report = verify_bundle(bundle)  # the downloaded file is the invoice's proof, and it verifies offline
    assert report.ok, report.summary()
    assert report.invoice_id == invoice_id


def test_invoice_shows_erp_postings_and_payments(served: tuple[str, Any], tmp_path: Path,
                                                 artifacts_dir: Path) -> None:
    """What the delivery engine and reconciliation write on the ledger (tested with the ERPs elsewhere)
    is what the customer reads in the invoice table: the ERP documents, each payment, the status."""
    from tests.helpers.api import last_month

    hub, ledger = served
    key = setup(hub)
    period, _ = last_month()
    sent = api(hub, "tok-device", "POST", "/v1/usage",
               signed_message(key, [reading("p-1", "scan", "3", f"{period}-10T10:00:00Z")], message_id="p1"))
    assert sent.status_code == 202, sent.text
    closed = api(hub, "tok-operator", "POST", f"/v1/contracts/{CONTRACT}/periods/{period}/close")
    assert closed.status_code == 200, closed.text
    invoice = closed.json()
    for fn, body in (
        ("RecordErpPosting", {"invoice_id": invoice["id"], "target": "provider", "system": "sap-soap",
                              "document_id": "5100000001", "delivery_id": "dlv-p"}),
        ("RecordErpPosting", {"invoice_id": invoice["id"], "target": "customer", "system": "oracle-rest",
                              "document_id": "300100187050001", "delivery_id": "dlv-c"}),
        ("RecordPayment", {"invoice_id": invoice["id"], "payment_id": "pay-77", "amount": "100.00",
                           "source": "sap-soap"}),
    ):
        ledger.submit(fn, [json.dumps(body)], as_org="ProviderMSP")
    with chromium(tmp_path) as driver:
        sign_in(driver, hub, "tok-customer")
        open_contract(driver, hub)
        row = f"tr[data-invoice='{invoice['id']}']"

        def settled_row(d: Any) -> str | None:  # the read model catches up with the ledger's events
            found = d.find_elements(By.CSS_SELECTOR, row)
            text = found[0].text if found else ""
            return text if "PARTIALLY_PAID" in text and "pay-77" in text else None

        text = WebDriverWait(driver, WAIT).until(settled_row)
        assert "provider: sap-soap 5100000001" in text and "customer: oracle-rest 300100187050001" in text
        assert "100.00 EUR (pay-77)" in text  # the ledger's amount as rounded there, minor units kept
        assert f"Payment reference {creditor_ref.for_invoice(invoice['id'])}" in text  # ISO 11649, ADR 0042
        assert f"{invoice['total']} EUR" in text or f"{Decimal(invoice['total']):,} EUR" in text
        driver.save_screenshot(str(artifacts_dir / "portal-invoice-settlement.png"))


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_provider_sees_its_contract_and_the_customers_usage(hub: str, tmp_path: Path,
                                                           artifacts_dir: Path) -> None:
    """The provider's view of the same page: its contract with the customer's usage and cost to date."""
    key = setup(hub)
    send(hub, key, "pv1", "4")
    with chromium(tmp_path) as driver:
        sign_in(driver, hub, "tok-provider")
        WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.LINK_TEXT, CONTRACT))
        driver.find_element(By.LINK_TEXT, CONTRACT).click()
        WebDriverWait(driver, WAIT).until(
            lambda d: "total 4 scan" in (d.find_element(By.CSS_SELECTOR, "figure[data-metric='scan'] canvas")
                                         .get_attribute("aria-label") or "")
        )
        usage = api(hub, "tok-provider", "GET", f"/v1/contracts/{CONTRACT}/usage").json()
        shown = f"{Decimal(usage['cost']['total']):,} EUR"  # the ledger's amount, as the page groups it
        WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "cost-to-date").text == shown)
        driver.save_screenshot(str(artifacts_dir / "portal-provider.png"))


def test_usual_use_per_metric_is_set_on_the_page_and_warns(hub: str, tmp_path: Path,
                                                          artifacts_dir: Path) -> None:
    key = setup(hub)
    send(hub, key, "u1", "6")
    with chromium(tmp_path) as driver:
        sign_in(driver, hub, "tok-customer")
        open_contract(driver, hub)
        field = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "rule-use-scan"))
        field.send_keys("2")  # usually 2 scans a month; 6 already, and the month is young
        driver.find_element(By.CSS_SELECTOR, "#rules-form button").click()
        WebDriverWait(driver, WAIT).until(
            lambda d: "usage overrun 150 (scan)" in d.find_element(By.ID, "alerts").text
        )
        driver.save_screenshot(str(artifacts_dir / "portal-usage-alert.png"))
    rules = api(hub, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/alert-rules").json()
    assert rules["usual_usage"] == {"scan": "2"}


def test_other_customer_sees_nothing(hub: str, tmp_path: Path, artifacts_dir: Path) -> None:
    setup(hub)
    with chromium(tmp_path) as driver:
        sign_in(driver, hub, "tok-other-customer")
        WebDriverWait(driver, WAIT).until(
            lambda d: "No contracts visible" in d.find_element(By.ID, "contract-rows").text
        )
        open_contract(driver, hub)
        WebDriverWait(driver, WAIT).until(
            lambda d: "unknown contract" in d.find_element(By.ID, "contract-rows").text.lower()
        )
        assert CONTRACT not in driver.find_element(By.ID, "contract-title").text
        driver.save_screenshot(str(artifacts_dir / "portal-other-customer.png"))


def test_bad_token_is_refused(hub: str, tmp_path: Path) -> None:
    with chromium(tmp_path) as driver:
        driver.get(hub + "/portal")
        WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "token")).send_keys("not-a-token")
        driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
        WebDriverWait(driver, WAIT).until(
            lambda d: "not accepted" in d.find_element(By.ID, "sign-in-error").text
        )
