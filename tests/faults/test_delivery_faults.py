"""Exactly once under ERP faults: 200 invoices (400 deliveries: AR and AP into SAP) through the real
embedded ledger and the SAP emulator over HTTP, with 30% of SOAP requests faulted (5xx, hangs past the
client timeout that post late, slow answers, resets, dropped answers after posting, business rejections).

Evidence: the emulator's own postings (each invoice and side posted once, or never when rejected), the
ledger's ERP references (equal to those postings), and the dead letters (only business rejections, each
with SAP's message)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.emulators.faults import ALL_FAULTS, FaultPlan
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.delivery.dispatcher import DeliveryOptions
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import delivery_service, hub_settings_for, issue_invoices, postings_by_invoice

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

INVOICES = 200
OPTIONS = DeliveryOptions(concurrency=6, batch=24, claim_seconds=60, max_attempts=15, backoff_base=0.01,
                          backoff_cap=0.08, breaker_threshold=10, breaker_open_seconds=0.05,
                          poll_seconds=0.01)


def test_two_hundred_invoices_with_thirty_percent_faults_post_exactly_once(tmp_path: Path,
                                                                          database_url: str) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        ids = issue_invoices(ledger, INVOICES)
        with SapSoapEmulator() as emulator:
            emulator.faults.configure(FaultPlan(probability=0.3, kinds=ALL_FAULTS, seed=20261122,
                                                hang_seconds=0.5, slow_seconds=0.03))
            settings = hub_settings_for(tmp_path, emulator, database_url, timeout=0.25, connect_timeout=0.5)
            service = delivery_service(ledger, settings, OPTIONS)
            service.run_until_idle(max_rounds=100_000)
            assert emulator.wait_idle(), "hung requests still running"
            injected = dict(emulator.faults.injected)
            postings = postings_by_invoice(emulator)
            rows = service.list(limit=10_000)
            service.dispatcher.close()

        # every kind of fault really happened, about 30% of all SOAP requests
        assert set(injected) == set(ALL_FAULTS), injected
        requests = len(emulator.state.requests)
        assert 0.2 * requests < sum(injected.values()) < 0.4 * requests

        # nothing lost: one row per invoice and side, each final
        assert len(rows) == 2 * INVOICES
        assert {(r["invoice_id"], r["target"]) for r in rows} == {
            (i, t) for i in ids for t in ("provider", "customer")}
        states = {r["state"] for r in rows}
        assert states <= {"delivered", "dead_letter"}, states

        kind = {"provider": "debtor", "customer": "creditor"}
        docs = {(p["item_text"], p["partner_kind"]): p["accounting_document"] for p in emulator.postings()}
        dead = [r for r in rows if r["state"] == "dead_letter"]
        assert dead, "with 30% faults some business rejections must have happened"
        for row in rows:
            key = (row["invoice_id"], kind[row["target"]])
            if row["state"] == "delivered":
                assert postings.get(key) == 1, (row["id"], postings.get(key))
                assert row["erp_ref"]["document_id"] == docs[key]
            else:
                # business rejections only, with SAP's message, and never posted
                assert row["last_error"]["code"] == "erp_rejected", row
                assert any("Posting period is not open" in m for m in row["erp_messages"]), row
                assert key not in postings
        # nothing twice: no posting the engine does not know about
        assert sum(postings.values()) == len(rows) - len(dead)
        assert max(postings.values()) == 1

        print(f"\ndelivery faults ({database_url.split(':')[0]}): {requests} SOAP requests, "
              f"injected {injected}, {len(rows) - len(dead)} delivered, {len(dead)} rejected (dead letter)")

        # the ledger agrees with SAP: every delivered side is recorded with SAP's document number
        for invoice_id in ids:
            invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})],
                                                 as_org=PROVIDER))
            refs = {r["target"]: r["document_id"] for r in invoice["erp_refs"]}
            expected = {r["target"]: r["erp_ref"]["document_id"] for r in rows
                        if r["invoice_id"] == invoice_id and r["state"] == "delivered"}
            assert refs == expected
            assert invoice["status"] == ("POSTED" if expected else "ISSUED")
    finally:
        ledger.close()
