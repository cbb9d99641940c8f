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


def test_payment_read_from_oracle_balance_settles_the_invoice(tmp_path: Path) -> None:
    """Oracle reports an invoice balance, not payments: the reconciler records the increase, once."""
    ledger = embedded_ledger(tmp_path / "ledger")
    with OracleRestEmulator(shared_dir=None) as oracle:
        (invoice_id,) = issue_invoices(
            ledger, 1, contract_id="ctr-oracle-ar", erp={"provider": "oracle-rest", "customer": "oracle-rest"}
        )
        settings = Settings(
            data_dir=tmp_path / "hub", parties=PARTIES, connectors={"oracle-rest": oracle_settings(oracle)}
        )
        svc = delivery_service(ledger, settings)
        svc.run_until_idle()

        def get() -> dict:
            return json.loads(
                ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER)
            )

        total = Decimal(get()["total"])
        (ar,) = oracle.postings("receivablesInvoices")
        oracle.pay("receivablesInvoices", int(ar["CustomerTransactionId"]), Decimal("1000.00"))
        assert svc.reconcile_once().payments_recorded == 1
        assert (get()["status"], get()["paid"]) == ("PARTIALLY_PAID", "1000.00")
        assert svc.reconcile_once().payments_recorded == 0  # nothing new: nothing written
        oracle.pay("receivablesInvoices", int(ar["CustomerTransactionId"]), total - Decimal("1000.00"))
        assert svc.reconcile_once().payments_recorded == 1
        assert get()["status"] == "SETTLED" and Decimal(get()["paid"]) == total
        svc.dispatcher.close()
    ledger.close()


def test_credit_note_reaches_both_erps_as_a_credit(tmp_path: Path) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    with SapSoapEmulator() as sap, OracleRestEmulator(shared_dir=None) as oracle:
        (invoice_id,) = issue_invoices(
            ledger, 1, contract_id="ctr-credit", erp={"provider": "sap-soap", "customer": "oracle-rest"}
        )
        settings = Settings(
            data_dir=tmp_path / "hub",
            parties=PARTIES,
            connectors={"sap-soap": sap_settings(sap), "oracle-rest": oracle_settings(oracle)},
        )
        svc = delivery_service(ledger, settings)
        svc.run_until_idle()
        ledger.submit(
            "Dispute", [json.dumps({"invoice_id": invoice_id, "reason": "scan count"})], as_org="CustomerMSP"
        )
        note = json.loads(
            ledger.submit(
                "IssueCreditNote",
                [json.dumps({"invoice_id": invoice_id, "reason": "agreed"})],
                as_org=PROVIDER,
            ).payload
        )
        svc.run_until_idle()
        rows = {(r["invoice_id"], r["target"]): r for r in svc.list()}
        assert rows[(note["id"], "provider")]["state"] == "delivered"
        assert rows[(note["id"], "customer")]["state"] == "delivered"
        (memo,) = [p for p in oracle.postings("invoices") if p["InvoiceNumber"] == note["id"]]
        assert memo["InvoiceType"] == "Credit memo" and Decimal(memo["InvoiceAmount"]) == -Decimal(
            note["total"]
        )
        assert len([p for p in sap.postings() if p["item_text"] == note["id"]]) == 1
        on_ledger = json.loads(
            ledger.evaluate("GetInvoice", [json.dumps({"id": note["id"]})], as_org=PROVIDER)
        )
        assert {r["target"] for r in on_ledger["erp_refs"]} == {"provider", "customer"}
        svc.reconcile_once()  # a credit note is never "paid": nothing recorded, nothing refused
        svc.dispatcher.close()
    ledger.close()
