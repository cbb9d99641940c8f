"""The portal shows the prepaid balance as usage draws it down (ADR 0051), in headless Chromium against a
real hub server on the embedded ledger."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_portal_browser import CONTRACT, WAIT, api, open_contract, send, setup, sign_in
from tests.helpers.browser import chromium

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_contract_page_shows_the_balance_drawn_by_usage(hub: str, tmp_path: Path,
                                                             artifacts_dir: Path) -> None:
    key = setup(hub)
    funded = api(hub, "tok-operator", "POST", f"/v1/contracts/{CONTRACT}/prepaid/top-ups",
                 {"top_up_id": "chq-1", "amount": "5000.00", "evidence": "cheque 1"})
    assert funded.status_code == 200, funded.text
    send(hub, key, "pp-1", "3")
    usage = api(hub, "tok-customer", "GET", f"/v1/contracts/{CONTRACT}/usage").json()
    drawn, balance = usage["prepaid"]["drawn"], usage["prepaid"]["balance"]
    assert drawn == usage["cost"]["total"] and Decimal(balance) == 5000 - Decimal(drawn)
    with chromium(tmp_path) as driver:
        sign_in(driver, hub, "tok-customer")
        open_contract(driver, hub)

        def card(d: Any) -> tuple[str, str] | None:
            shown = d.find_element(By.ID, "prepaid-card")
            text = d.find_element(By.ID, "prepaid-sub").text
            big = d.find_element(By.ID, "prepaid-balance").text
            return (big, text) if shown.is_displayed() and text else None

        big, sub = WebDriverWait(driver, WAIT).until(card)
        assert big == f"{Decimal(balance):,} EUR"  # what the ledger holds after the batch drew it down
        assert sub.startswith(f"drawn {Decimal(drawn):,} EUR in ")
        driver.save_screenshot(str(artifacts_dir / "portal-prepaid.png"))
