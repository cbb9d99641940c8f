"""Exactly once through the delivery engine for the REST connectors, as for SAP SOAP: 200 invoices on the
real embedded ledger, 30 % injected faults of every kind at the ERP emulator (including a dropped response
after the posting was made), then count the emulator's postings: every invoice exactly once, none lost,
business rejections dead-lettered with the ERP's message."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from connectors.emulators.faults import ALL_FAULTS, FaultPlan
from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_odata import SapODataEmulator
from connectors.oracle_rest import ar_transaction_number
from connectors.sap_odata import sap_reference
from hub.config import Settings
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import FAST, delivery_service, issue_invoices
from tests.helpers.erp import PARTIES, odata_settings, oracle_settings

pytestmark = [pytest.mark.faults, pytest.mark.slow]
INVOICES = 200
PLAN = FaultPlan(probability=0.3, kinds=ALL_FAULTS, seed=23, hang_seconds=0.8, slow_seconds=0.02)


def check_outcome(svc, ledger, counts: Counter, key) -> None:
    rows = svc.list()
    states = Counter(r["state"] for r in rows)
    assert set(states) <= {"delivered", "dead_letter"}, states  # nothing left half-way
    for row in rows:
        invoice_id = row["invoice_id"]
        if row["state"] == "delivered":
            assert counts[key(invoice_id, row["target"])] == 1, row
            invoice = json.loads(
                ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER)
            )
            assert row["target"] in {r["target"] for r in invoice["erp_refs"]}
        else:
            assert counts[key(invoice_id, row["target"])] == 0, row
            assert row["erp_messages"], row  # the ERP's own words for the operator
    assert sum(counts.values()) == states["delivered"]
    assert states["dead_letter"] > 0  # business rejections were injected and landed there


def test_oracle_receivables_and_payables(tmp_path: Path) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    with OracleRestEmulator(shared_dir=None) as oracle:
        ids = issue_invoices(
            ledger,
            INVOICES,
            contract_id="ctr-oracle-faults",
            erp={"provider": "oracle-rest", "customer": "oracle-rest"},
        )
        oracle.faults.configure(PLAN)
        settings = Settings(
            data_dir=tmp_path / "hub",
            parties=PARTIES,
            connectors={"oracle-rest": oracle_settings(oracle, timeout=0.4)},
        )
        svc = delivery_service(ledger, settings, FAST)
        svc.run_until_idle()
        assert set(oracle.faults.snapshot()["injected"]) == set(ALL_FAULTS)
        numbers = {ar_transaction_number(i): i for i in ids}
        counts = Counter()
        for p in oracle.postings("receivablesInvoices"):
            counts[(numbers[p["TransactionNumber"]], "provider")] += 1
        for p in oracle.postings("invoices"):
            counts[(p["InvoiceNumber"], "customer")] += 1
        check_outcome(svc, ledger, counts, lambda i, t: (i, t))
        assert len(svc.list()) == 2 * INVOICES
        svc.dispatcher.close()
    ledger.close()


def test_sap_odata_payables_beside_ubl_drop(tmp_path: Path) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    with SapODataEmulator(metadata_dir=None, csrf_loss_probability=0.05) as sap:
        ids = issue_invoices(
            ledger,
            INVOICES,
            contract_id="ctr-odata-faults",
            erp={"provider": "ubl-drop", "customer": "sap-odata"},
        )
        sap.faults.configure(PLAN)
        settings = Settings(
            data_dir=tmp_path / "hub",
            parties=PARTIES,
            connectors={
                "sap-odata": odata_settings(sap, timeout=0.4),
                "ubl-drop": {"directory": str(tmp_path / "drop")},
            },
        )
        svc = delivery_service(ledger, settings, FAST)
        svc.run_until_idle()
        assert set(sap.faults.snapshot()["injected"]) == set(ALL_FAULTS)
        references = {sap_reference(i): i for i in ids}
        counts = Counter((references[p["SupplierInvoiceIDByInvcgParty"]], "customer") for p in sap.postings())
        for path in (tmp_path / "drop").glob("*.xml"):
            counts[(path.stem, "provider")] += 1
        check_outcome(svc, ledger, counts, lambda i, t: (i, t))
        assert len(svc.list()) == 2 * INVOICES
        svc.dispatcher.close()
    ledger.close()
