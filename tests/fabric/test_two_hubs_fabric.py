"""One hub per org on a real Fabric network (ADR 0065): the provider's hub and the customer's hub are two
`ledgerhub serve --org ...` processes, each with its own SQLite database, its own key store (its org's
client identity only) and its own ERP emulator (SAP for the provider, Oracle for the customer).

A contract is proposed on the provider's hub and accepted on the customer's; a month of readings goes to the
provider's hub; the period is closed there; each hub posts its own side of the invoice into its own ERP
once and records its own `RecordErpPosting`; the customer's hub learns of the payment first and the
provider's then finds nothing new; both hubs answer the same invoice. Then the customer's hub is killed
(`kill -9`) while its Oracle holds the answer to the next invoice's posting, restarted, and the invoice is
still posted exactly once; a second test kills the provider's hub while SAP holds its posting request and
shows one SAP posting after the restart. Every wait polls with a deadline; nothing asserts on elapsed time."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.emulators.faults import FaultPlan
from tests.helpers.api import last_month, ts
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.hub_process import (
    HubProcess,
    close_period,
    delivered,
    deliveries,
    two_hubs,
    wait_for,
)

pytestmark = [pytest.mark.fabric, pytest.mark.e2e]


def test_two_hubs_on_fabric_each_post_their_own_side_once_and_survive_kill_9(
        fabric_network: FabricNetwork, tmp_path: Path) -> None:
    with two_hubs(fabric_network.network_json, tmp_path) as (provider, customer, sap, oracle):
        key = make_device_key("two-hubs-fabric")
        period, start = last_month()
        contract = sample_contract(id="ctr-hubs-1", assets=["dev-hubs-1"], start=start,
                                   erp={"provider": "sap-soap", "customer": "oracle-rest"})
        r = provider.call("POST", "/v1/assets", "tok-provider", json=sample_asset(key, "dev-hubs-1"))
        assert r.status_code == 201, r.text
        r = provider.call("POST", "/v1/contracts", "tok-provider", json=contract)
        assert r.status_code == 201, r.text
        # each hub refuses another org's token; the customer accepts on its own hub, through its own peer
        for hub, token in ((provider, "tok-customer"), (customer, "tok-provider")):
            refused = hub.call("POST", "/v1/contracts/ctr-hubs-1/accept", token)
            assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org", refused.text
        r = customer.call("POST", "/v1/contracts/ctr-hubs-1/accept", "tok-customer")
        assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text

        readings = [reading(f"hubs-r{i}", "scan", "1", ts(period, 1 + i % 27, 8 + i % 10)) for i in range(90)]
        for n in range(3):  # a month of readings, in three messages, to the provider's hub
            message = signed_message(key, readings[n * 30:(n + 1) * 30], device_id="dev-hubs-1",
                                     message_id=f"hubs-m{n}")
            r = provider.call("POST", "/v1/usage", "tok-device", json=message, params={"wait": "true"})
            assert r.status_code in (200, 201, 202), r.text
        refused = customer.call("POST", "/v1/usage", "tok-device", json=message)
        assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org"

        invoice_id = close_period(provider, "ctr-hubs-1", period)
        wait_for("the provider's delivery", lambda: delivered(provider, invoice_id, "tok-operator"))
        wait_for("the customer's delivery", lambda: delivered(customer, invoice_id, "tok-customer-operator"))
        p_rows = delivered(provider, invoice_id, "tok-operator")
        c_rows = delivered(customer, invoice_id, "tok-customer-operator")
        assert [(r["target"], r["connector"]) for r in p_rows] == [("provider", "sap-soap")]
        assert [(r["target"], r["connector"]) for r in c_rows] == [("customer", "oracle-rest")]
        (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
        assert ar["partner_kind"] == "debtor"
        (ap,) = [p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice_id]
        assert oracle.postings("receivablesInvoices") == []

        def invoice_on(hub: HubProcess, token: str) -> dict[str, Any]:
            r = hub.call("GET", f"/v1/invoices/{invoice_id}", token)
            assert r.status_code == 200, r.text
            return dict(r.json())

        invoice = invoice_on(provider, "tok-provider")
        assert invoice["readings"] == 90
        refs = {r["target"]: r for r in invoice["erp_refs"]}
        assert refs["provider"]["document_id"] == ar["accounting_document"]
        assert refs["customer"]["document_id"] == str(ap["InvoiceId"])
        total = Decimal(invoice["total"])

        # the customer's AP pays; its hub learns first; then SAP shows the same money to the provider's hub
        oracle.pay("invoices", int(ap["InvoiceId"]), total)
        wait_for("SETTLED on the customer's hub",
                 lambda: invoice_on(customer, "tok-customer")["status"] == "SETTLED")
        sap.state.pay(ar["company_code"], ar["accounting_document"], ar["fiscal_year"], total)
        wait_for("the provider's SAP delivery reconciled", lambda: [
            r for r in deliveries(provider, invoice_id, "tok-operator") if r["erp_state"] == "paid"])
        views = (invoice_on(provider, "tok-provider"), invoice_on(customer, "tok-customer"))
        assert views[0] == views[1]
        assert views[0]["status"] == "SETTLED" and len(views[0]["payments"]) == 1
        assert Decimal(views[0]["paid"]) == total

        # kill -9 of the customer's hub while Oracle holds its answer to the next invoice's posting
        oracle.faults.configure(FaultPlan(hang_seconds=12.0))
        oracle.faults.queue("timeout")  # Oracle books the payable, then answers only after 12 s
        contract2 = dict(contract, id="ctr-hubs-2", assets=["dev-hubs-2"])
        key2 = make_device_key("two-hubs-fabric-2")
        assert provider.call("POST", "/v1/assets", "tok-provider",
                             json=sample_asset(key2, "dev-hubs-2")).status_code == 201
        assert provider.call("POST", "/v1/contracts", "tok-provider", json=contract2).status_code == 201
        assert customer.call("POST", "/v1/contracts/ctr-hubs-2/accept", "tok-customer").status_code == 200
        message = signed_message(key2, readings[:10], device_id="dev-hubs-2", message_id="hubs2-m0")
        r = provider.call("POST", "/v1/usage", "tok-device", json=message, params={"wait": "true"})
        assert r.status_code in (200, 201, 202), r.text
        invoice2 = close_period(provider, "ctr-hubs-2", period)
        wait_for("Oracle to book the second payable",
                 lambda: [p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice2])
        customer.kill9()  # mid-delivery: the ERP booked it, the hub has no answer and no ledger record yet
        before = provider.call("GET", f"/v1/invoices/{invoice2}", "tok-provider").json()
        assert "customer" not in {r["target"] for r in before["erp_refs"]}  # the killed hub recorded nothing
        customer.start()
        wait_for("the customer's delivery after the restart",
                 lambda: delivered(customer, invoice2, "tok-customer-operator"))
        wait_for("the provider's delivery of the second invoice",
                 lambda: delivered(provider, invoice2, "tok-operator"))
        assert len([p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice2]) == 1
        (row,) = deliveries(customer, invoice2, "tok-customer-operator")
        assert row["attempts"] >= 2  # the restarted hub took the row over and finished it (same message UUID)
        assert len([p for p in sap.postings() if p["item_text"] == invoice2]) == 1
        second = customer.call("GET", f"/v1/invoices/{invoice2}", "tok-customer").json()
        refs2 = {r["target"]: r["system"] for r in second["erp_refs"]}
        assert refs2 == {"provider": "sap-soap", "customer": "oracle-rest"}
        # nothing of the first invoice was posted again by the restarted hub
        assert len([p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice_id]) == 1
        faults = dict(oracle.faults.injected)
        print(f"two hubs: invoice {invoice_id} total {total} posted once per ERP; customer hub killed -9 "
              f"mid-delivery of {invoice2}, restarted, posted once (Oracle faults: {faults})")


def test_a_hub_of_one_org_holds_only_its_identity_and_fabric_refuses_it_acting_as_another(
        fabric_network: FabricNetwork, tmp_path: Path) -> None:
    """The customer's hub's ledger holds the customer's identity and gateway only; the mapping refuses a call
    for the provider before the ledger sees it; and what the identity can sign, Fabric checks: a contract
    naming the provider, proposed with the customer's identity, is refused by the chaincode on the peers."""
    from hub.billing.client import ContractClient, OrgMapping
    from hub.config import Settings
    from hub.errors import WrongHubOrg
    from hub.ledger.base import ChaincodeRejected, LedgerError
    from hub.ledger.fabric import open_fabric_ledger

    settings = Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json, org=CUSTOMER,
                        data_dir=tmp_path / "customer")
    ledger = open_fabric_ledger(settings)
    try:
        assert ledger.identity(CUSTOMER).msp_id == CUSTOMER
        with pytest.raises(LedgerError, match="no identity"):
            ledger.identity(PROVIDER)
        client = ContractClient(ledger, orgs=OrgMapping.from_settings(settings, ledger))
        key = make_device_key("one-org-fabric")
        with pytest.raises(WrongHubOrg):
            client.register_asset(sample_asset(key, "dev-one-org"), as_org=PROVIDER)
        contract = sample_contract(id="ctr-one-org", assets=["dev-one-org"], start="2026-09-01")
        with pytest.raises(ChaincodeRejected) as refused:  # the customer signs; the peers run the check
            client.propose_contract(contract, as_org=CUSTOMER)
        assert refused.value.code == "forbidden"
    finally:
        ledger.close()


def test_kill_9_of_the_provider_hub_mid_delivery_posts_to_sap_once_after_restart(
        fabric_network: FabricNetwork, tmp_path: Path) -> None:
    """SAP holds the provider hub's posting request (a `timeout` fault: it hangs, then books and drops the
    connection); the provider's hub is killed while the request is in flight, restarted, takes the row over
    and re-sends with the same message UUID: one SAP posting, one `RecordErpPosting` of the provider."""
    with two_hubs(fabric_network.network_json, tmp_path) as (provider, customer, sap, oracle):
        key = make_device_key("two-hubs-fabric-3")
        period, start = last_month()
        contract = sample_contract(id="ctr-hubs-3", assets=["dev-hubs-3"], start=start,
                                   erp={"provider": "sap-soap", "customer": "oracle-rest"})
        assert provider.call("POST", "/v1/assets", "tok-provider",
                             json=sample_asset(key, "dev-hubs-3")).status_code == 201
        assert provider.call("POST", "/v1/contracts", "tok-provider", json=contract).status_code == 201
        assert customer.call("POST", "/v1/contracts/ctr-hubs-3/accept", "tok-customer").status_code == 200
        rs = [reading(f"hubs3-r{i}", "scan", "1", ts(period, 1 + i % 27, 9)) for i in range(10)]
        message = signed_message(key, rs, device_id="dev-hubs-3", message_id="hubs3-m0")
        r = provider.call("POST", "/v1/usage", "tok-device", json=message, params={"wait": "true"})
        assert r.status_code in (200, 201, 202), r.text

        sap.faults.configure(FaultPlan(hang_seconds=12.0))
        sap.faults.queue("timeout")  # SAP holds the first request 12 s, then books it and drops the line
        invoice_id = close_period(provider, "ctr-hubs-3", period)

        def sap_holds_a_request() -> bool:
            with sap.state.lock:
                return bool(sap.state.inflight)

        wait_for("SAP to hold the provider's posting request", sap_holds_a_request)
        provider.kill9()  # mid-delivery: the request is at SAP, the hub has no answer and no ledger record
        wait_for("the customer's delivery", lambda: delivered(customer, invoice_id, "tok-customer-operator"))
        before = customer.call("GET", f"/v1/invoices/{invoice_id}", "tok-customer").json()
        assert "provider" not in {r["target"] for r in before["erp_refs"]}  # the killed hub recorded nothing
        provider.start()
        wait_for("the provider's delivery after the restart",
                 lambda: delivered(provider, invoice_id, "tok-operator"))
        (row,) = deliveries(provider, invoice_id, "tok-operator")
        assert (row["target"], row["connector"]) == ("provider", "sap-soap")
        assert row["attempts"] >= 2  # the restarted hub took the row over and finished it
        sap.wait_idle()
        (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
        assert len([p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice_id]) == 1
        after = customer.call("GET", f"/v1/invoices/{invoice_id}", "tok-customer").json()
        refs = {r["target"]: r for r in after["erp_refs"]}
        assert refs["provider"]["document_id"] == ar["accounting_document"]
        assert set(refs) == {"provider", "customer"}
        print(f"two hubs: provider hub killed -9 mid-delivery of {invoice_id}, restarted, one SAP posting "
              f"(SAP faults: {dict(sap.faults.injected)})")
