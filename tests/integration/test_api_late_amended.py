"""The proof of an invoice billing late usage of an amended contract verifies offline (ADR 0048 "Later").

The embedded ledger and the hub on a test clock live through September and October 2026 (an amendment
cannot take effect in the past, so a real clock cannot): case (b) of tests/unit/test_late_amended.py —
version 2 (scans 95.00) from 16 September cuts September; late scans of 10 and 20 September arrive on 5
October and are billed on October's invoice at 80.00 (version 1) and 95.00 (version 2). The verifier
takes the plan versions from the contract record the closing transaction wrote, rates October and the late
readings the same way, and reports a late amount changed to the new price.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest

from chaincode import keys
from hub.audit.verify import verify_bundle
from tests.helpers.api import auth, hub_client, hub_settings, post_usage, usage
from tests.helpers.chaincode import (
    CONTRACT_ID,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
)
from tests.helpers.embedded import Clock, contract_ledger
from tests.unit.test_contract_amendments import PLAN_V1, PLAN_V2
from tests.unit.test_late_amended import NEXT

pytestmark = pytest.mark.integration
U = dt.UTC
KEY = make_device_key("late-amend-api")
C = f"/v1/contracts/{CONTRACT_ID}"


def test_the_proof_of_late_usage_across_an_amendment_verifies_and_a_forged_amount_fails(
    tmp_path: Path,
) -> None:
    clock = Clock(dt.datetime(2026, 9, 1, 8, tzinfo=U))
    ledger = contract_ledger(tmp_path / "ledger", clock)
    try:
        with hub_client(hub_settings(tmp_path), ledger, background=False, clock=clock) as client:
            assert client.post("/v1/assets", json=sample_asset(KEY), headers=auth("tok-provider")
                               ).status_code == 201
            contract = sample_contract(**{**PLAN_V1, "start": "2026-09-01"}, late_readings=NEXT)
            r = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
            assert r.status_code == 201, r.text
            assert client.post(f"{C}/accept", headers=auth("tok-customer")).json()["status"] == "ACTIVE"
            clock.now = dt.datetime(2026, 9, 10, 8, tzinfo=U)
            r = client.post(f"{C}/amendments", headers=auth("tok-provider"), json={
                "id": "am-1", "effective_from": "2026-09-16T00:00:00+02:00", "plan": PLAN_V2})
            assert r.status_code == 201, r.text
            r = client.post(f"{C}/amendments/am-1/accept", headers=auth("tok-customer"))
            assert r.status_code == 200, r.text

            clock.now = dt.datetime(2026, 10, 1, 12, tzinfo=U)
            r = client.post(f"{C}/periods/2026-09/close", headers=auth("tok-operator"))
            assert r.status_code == 200, r.text
            clock.now = dt.datetime(2026, 10, 5, 12, tzinfo=U)
            late = [reading("l-old", "scan", "1", "2026-09-10T10:00:00+02:00"),
                    reading("l-new", "scan", "1", "2026-09-20T10:00:00+02:00")]
            sent = post_usage(client, usage(KEY, "m-late", late))
            assert sent.status_code == 202 and sent.json()["accepted"] == 2, sent.text

            clock.now = dt.datetime(2026, 11, 1, 12, tzinfo=U)
            r = client.post(f"{C}/periods/2026-10/close", headers=auth("tok-operator"))
            assert r.status_code == 200, r.text
            invoice_id = r.json()["id"]
            invoice = client.get(f"/v1/invoices/{invoice_id}", headers=auth("tok-customer")).json()
            assert [(ln["plan_version"], ln["amount"], ln["description"])
                    for ln in invoice["lines"] if "late_of" in ln] == [
                (1, "80.00", "late usage 2026-09 (plan version 1)"),
                (2, "95.00", "late usage 2026-09 (plan version 2)")]
            assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("3775.00", "717.25", "4492.25")

            r = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth("tok-customer"))
            assert r.status_code == 200, r.text
            bundle = r.json()
            report = verify_bundle(bundle)
            assert report.ok, report.summary()
            # the late reading of the old version billed at the new price: reported
            forged = copy.deepcopy(bundle)
            line = next(ln for ln in forged["invoice"]["lines"] if ln.get("plan_version") == 1
                        and "late_of" in ln)
            line["amount"] = "95.00"
            assert "line_amount" in verify_bundle(forged).failed_checks()
            # September's own invoice (cut by the amendment, prorated) verifies too
            r = client.get(f"/v1/invoices/{keys.invoice_id(CONTRACT_ID, '2026-09')}/proof",
                           headers=auth("tok-customer"))
            assert r.status_code == 200, r.text
            report = verify_bundle(r.json())
            assert report.ok, report.summary()
    finally:
        ledger.close()
