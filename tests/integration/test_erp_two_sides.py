"""One ledger invoice, two ERPs: the provider books the receivable in SAP (SOAP journal entry), the customer
the payable in Oracle Fusion (REST). Same amounts on both sides, both postings recorded on the ledger, and
payment read back from the provider's SAP settles the invoice on the ledger."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.config import Settings
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import delivery_service, issue_invoices, sap_settings
from tests.helpers.erp import PARTIES, oracle_settings

pytestmark = pytest.mark.integration


def test_sap_receivable_and_oracle_payable_for_one_invoice(tmp_path: Path, database_url: str) -> None:
    with contextlib.ExitStack() as stack:  # ledger, emulators and dispatcher closed even when an assert fails
        ledger = embedded_ledger(tmp_path / "ledger")
        stack.callback(ledger.close)
        sap = stack.enter_context(SapSoapEmulator())
        oracle = stack.enter_context(OracleRestEmulator(shared_dir=None))
        (invoice_id,) = issue_invoices(
            ledger, 1, contract_id="ctr-two-sides", erp={"provider": "sap-soap", "customer": "oracle-rest"}
        )
        settings = Settings(
            data_dir=tmp_path / "hub",
            database_url=database_url,
            parties=PARTIES,
            connectors={"sap-soap": sap_settings(sap), "oracle-rest": oracle_settings(oracle)},
        )
        svc = delivery_service(ledger, settings)
        stack.callback(svc.dispatcher.close)
        svc.run_until_idle()
        invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER))
        total = Decimal(invoice["total"])

        (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
        assert ar["partner_kind"] == "debtor"
        assert Decimal(str(ar["amount"])) == total
        (ap,) = oracle.postings("invoices")
        assert ap["InvoiceNumber"] == invoice_id and Decimal(ap["InvoiceAmount"]) == total
        assert oracle.postings("receivablesInvoices") == []

        refs = {r["target"]: r for r in invoice["erp_refs"]}
        assert (
            refs["provider"]["system"] == "sap-soap"
            and refs["provider"]["document_id"] == ar["accounting_document"]
        )
        assert refs["customer"]["system"] == "oracle-rest" and refs["customer"]["document_id"] == str(
            ap["InvoiceId"]
        )
        assert invoice["status"] == "POSTED"

        key = (ar["company_code"], ar["accounting_document"], ar["fiscal_year"])
        sap.state.pay(*key, total)
        oracle.pay("invoices", int(ap["InvoiceId"]), total)  # the customer paid from its AP: counted once
        svc.reconcile_once()
        settled = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER))
        assert settled["status"] == "SETTLED" and Decimal(settled["paid"]) == total
        assert len(settled["payments"]) == 1
