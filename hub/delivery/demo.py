"""The demo's last act: the invoice the ledger issued arrives in both parties' ERPs; the payment comes back.

The provider books it as a receivable in SAP (Journal Entry SOAP service), the hospital as a payable in
Oracle Fusion (REST); both postings are recorded on the ledger; the hospital pays, SAP shows it, and
reconciliation settles the invoice on the ledger. The ERPs are the local emulators, over real HTTP.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.billing.answers import Invoice
from hub.billing.client import ContractClient
from hub.delivery.dispatcher import DeliveryOptions
from hub.delivery.service import DeliveryService

DEMO_PARTIES: dict[str, dict[str, Any]] = {
    "provider": {"name": "Imaging Leasing Inc.", "country": "US", "city": "Boston",
                 "erp_ids": {"sap_supplier": "17300001", "oracle_supplier": "Imaging Leasing Inc."}},
    "customer": {"name": "Boston General Hospital", "country": "US", "city": "Boston",
                 "erp_ids": {"sap_customer": "10100001", "oracle_customer_number": "1008"}},
}


def demo_step(ctx: Any) -> None:
    services, console, invoice = ctx.services, ctx.console, ctx.invoice
    provider, customer = ctx.contract["provider"], ctx.contract["customer"]
    with SapSoapEmulator() as sap, OracleRestEmulator(shared_dir=None) as oracle:
        settings = services.settings.updated(**{
            "parties": {provider: DEMO_PARTIES["provider"], customer: DEMO_PARTIES["customer"]},
            "connectors": {
                "sap-soap": {"wsdl": sap.wsdl_url, "endpoint": sap.endpoint, "company_code": "1010",
                             "sap_client": "100", "timeout": 5},
                "oracle-rest": {"base_url": oracle.base_url, "business_unit": "Boston Operations",
                                "timeout": 5, "auth": {"type": "basic", "username": "integration",
                                                       "password": "secret"}},
            },
        })
        engine = DeliveryService(services.ledger, services.db, settings,
                                 options=DeliveryOptions(concurrency=2, poll_seconds=0.02))
        try:
            engine.run_until_idle()
            (ar,) = [p for p in sap.postings() if p["item_text"] == invoice["id"]]
            (ap,) = oracle.postings("invoices")
            on_ledger = _invoice(services, invoice["id"], provider)
            console.print(
                f"8. Delivered exactly once: SAP journal entry [bold]{ar['accounting_document']}[/] "
                f"(receivable, customer {DEMO_PARTIES['customer']['erp_ids']['sap_customer']}) "
                f"and Oracle payable invoice [bold]{ap['InvoiceId']}[/], both "
                f"${Decimal(ap['InvoiceAmount']):,}; ledger status {on_ledger.status} with "
                f"{len(on_ledger.erp_refs)} ERP references")
            sap.state.pay(ar["company_code"], ar["accounting_document"], ar["fiscal_year"],
                          Decimal(invoice["total"]))
            engine.reconcile_once()
            settled = _invoice(services, invoice["id"], provider)
            console.print(f"9. The hospital paid; reconciliation read SAP and recorded it → "
                          f"[bold green]{settled.status}[/] (paid ${settled.paid:,})")
            ctx.facts["erp"] = {"sap_document": ar["accounting_document"], "oracle_invoice": ap["InvoiceId"],
                                "status": settled.status}
        finally:
            engine.dispatcher.close()


def _invoice(services: Any, invoice_id: str, org: str) -> Invoice:
    return ContractClient.of(services.ledger).get_invoice(invoice_id, as_org=org)
