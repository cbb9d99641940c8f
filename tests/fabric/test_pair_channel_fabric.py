"""The hubs of a pair channel on a real Fabric network (ADRs 0066-0068): a hub serves one (org, channel).

Org `pairhub` joins the session's `consortium` network with a channel of its own (`billing-pairhub`: the
provider, pairhub and the auditor). The provider's hub for that channel and pairhub's hub are two
`ledgerhub serve --org X --channel billing-pairhub` processes, each with its own database and ERP emulator
(SAP for the provider, Oracle for pairhub). A month of readings goes to the provider's hub; the provider
hub's *scheduler* closes the period (no close call: the hub is restarted with the grace that makes the
period due, and its start-up pass issues the invoice); each hub posts its own side once into its own ERP;
the payment is reconciled; both hubs answer the same invoice; the invoice's proof bundle carries the pair
channel's config block and verifies pinned to that channel's genesis hash, and fails (`anchor`) pinned to
`billing`'s. Meanwhile a contract on `billing` keeps billing; the customer of `billing` (CustomerMSP)
sees that contract through its hub and not the pair channel's one (404), its hub refuses to start on the
pair channel, and Fabric refuses its identity there. Every wait polls with a deadline."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.audit.verify import verify_bundle
from hub.billing.client import ContractClient
from hub.config import Settings
from hub.ledger.base import Ledger, LedgerError
from hub.ledger.fabric import FabricLedger, GatewayEndpoint, load_msp_identity, open_fabric_ledger
from network import orgs
from tests.helpers.api import TOKENS, last_month, ts
from tests.helpers.chaincode import (
    AUDITOR,
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.erp import PARTIES
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.hub_process import HubProcess, delivered, deliveries, invoice_on, two_hubs, wait_for

pytestmark = [pytest.mark.fabric, pytest.mark.e2e]

NAME = "pairhub"
PAIR = f"billing-{NAME}"
MSP = "PairhubMSP"
PAIR_TOKENS = {
    "tok-pair": {"org": MSP, "role": "customer"},
    "tok-pair-operator": {"org": MSP, "role": "operator"},
}
PAIR_PARTY = dict(PARTIES[CUSTOMER], name="Praxis Nord", email="ap@praxis-nord.example")
NEVER_DUE = 10**9  # close grace (s) that keeps the scheduler from closing anything until the restart


def _arg(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def _genesis(net: FabricNetwork, channel: str | None) -> str:
    """The channel's genesis hash, read from the auditor's own peer by the auditor's hub ledger."""
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=net.network_json,
                                         fabric_channel=channel, org=AUDITOR))
    try:
        return bytes(ledger.block(0).hash).hex()
    finally:
        ledger.close()


def _as_customer_on(net: FabricNetwork, channel: str) -> FabricLedger:
    """CustomerMSP's own identity and peer, pointed at `channel` (the hub refuses to build this; Fabric is
    asked directly)."""
    org = json.loads(net.network_json.read_text())["orgs"]["customer"]
    peer = org["peer"]
    return FabricLedger(
        channel=channel, chaincode="billing",
        identities={CUSTOMER: load_msp_identity(CUSTOMER, Path(org["client"]["msp_dir"]))},
        gateways={CUSTOMER: GatewayEndpoint(address=peer["endpoint"],
                                            tls_root_pem=Path(peer["tls_root_cert"]).read_bytes(),
                                            server_name=peer["host_name"])},
        default_org=CUSTOMER,
    )


def _send_on_billing(ledger: Ledger, key: Any, device: str, message_id: str, period: str, n: int) -> None:
    rs = [reading(f"{message_id}-r{i}", "scan", "1", ts(period, 1 + i % 27, 11)) for i in range(n)]
    message = signed_message(key, rs, device_id=device, message_id=message_id)
    answer = json.loads(
        ledger.submit("RecordUsage", [_arg({"messages": [message]})], as_org=PROVIDER).payload)
    assert answer["accepted"] == n, answer


def _scheduler_closes(hub: HubProcess) -> float:
    text = hub.call("GET", "/metrics", "none").text
    lines = [ln for ln in text.splitlines() if ln.startswith("ledgerhub_periods_closed_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if 'trigger="scheduler"' in ln)


def test_the_hubs_of_a_pair_channel_bill_a_month_the_scheduler_closes_and_billing_keeps_billing(
        consortium: FabricNetwork, tmp_path: Path) -> None:
    period, start = last_month()
    network_json = consortium.network_json

    # a first contract on `billing` (the default channel), billing before the new org joins
    billing = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=network_json))
    try:
        assert billing.network_id == "billing"
        bkey, bdev, bctr = make_device_key("pair-billing-first"), "dev-pairb-1", "ctr-pairb-1"
        billing.submit("RegisterAsset", [_arg(sample_asset(bkey, bdev))], as_org=PROVIDER)
        billing.submit("ProposeContract", [_arg(sample_contract(id=bctr, assets=[bdev], start=start))],
                       as_org=PROVIDER)
        billing.submit("AcceptContract", [_arg({"contract_id": bctr})], as_org=CUSTOMER)
        _send_on_billing(billing, bkey, bdev, "pairb-m0", period, 10)

        joined = orgs.add_org(consortium.run_dir, NAME, own_channel=True)
        assert joined["mspid"] == MSP and joined["channel"] == PAIR
        pair_genesis, billing_genesis = _genesis(consortium, PAIR), _genesis(consortium, None)
        assert pair_genesis != billing_genesis

        settings = {"tokens": {**TOKENS, **PAIR_TOKENS}, "parties": {**PARTIES, MSP: PAIR_PARTY}}
        with two_hubs(network_json, tmp_path, customer=MSP, channel=PAIR, settings=settings,
                      provider_settings={"close_grace_seconds": NEVER_DUE}) as (provider, pair, sap, oracle):
            key = make_device_key("pair-hub-fabric")
            contract = sample_contract(id="ctr-pair-1", assets=["dev-pair-1"], start=start, customer=MSP,
                                       erp={"provider": "sap-soap", "customer": "oracle-rest"})
            r = provider.call("POST", "/v1/assets", "tok-provider", json=sample_asset(key, "dev-pair-1"))
            assert r.status_code == 201, r.text
            r = provider.call("POST", "/v1/contracts", "tok-provider", json=contract)
            assert r.status_code == 201, r.text
            r = pair.call("POST", "/v1/contracts/ctr-pair-1/accept", "tok-pair")
            assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text

            readings = [reading(f"pair-r{i}", "scan", "1", ts(period, 1 + i % 27, 8 + i % 10))
                        for i in range(60)]
            for n in range(2):  # a month of readings, to the hub of the contract's channel
                message = signed_message(key, readings[n * 30:(n + 1) * 30], device_id="dev-pair-1",
                                         message_id=f"pair-m{n}")
                r = provider.call("POST", "/v1/usage", "tok-device", json=message, params={"wait": "true"})
                assert r.status_code in (200, 201, 202), r.text
            _send_on_billing(billing, bkey, bdev, "pairb-m1", period, 5)  # `billing` keeps billing meanwhile

            # the scheduler closes the period: nothing closed it yet; restarted with the default grace, the
            # provider hub's start-up pass finds the ended month and issues the invoice
            invoice_id = ContractClient.invoice_id("ctr-pair-1", period)
            assert provider.call("GET", f"/v1/invoices/{invoice_id}", "tok-provider").status_code == 404
            provider.stop()
            provider.configure(close_grace_seconds=3600)
            provider.start()
            wait_for("the provider hub's scheduler to close the period", lambda: provider.call(
                "GET", f"/v1/invoices/{invoice_id}", "tok-provider").status_code == 200)
            assert _scheduler_closes(provider) >= 1
            invoice = invoice_on(provider, invoice_id, "tok-provider")
            assert invoice["readings"] == 60 and invoice["customer"] == MSP

            wait_for("the provider's delivery", lambda: delivered(provider, invoice_id, "tok-operator"))
            wait_for("pairhub's delivery", lambda: delivered(pair, invoice_id, "tok-pair-operator"))
            p_rows = delivered(provider, invoice_id, "tok-operator")
            c_rows = delivered(pair, invoice_id, "tok-pair-operator")
            assert [(r["target"], r["connector"]) for r in p_rows] == [("provider", "sap-soap")]
            assert [(r["target"], r["connector"]) for r in c_rows] == [("customer", "oracle-rest")]
            (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
            (ap,) = [p for p in oracle.postings("invoices") if p["InvoiceNumber"] == invoice_id]
            total = Decimal(invoice["total"])

            oracle.pay("invoices", int(ap["InvoiceId"]), total)  # pairhub's AP pays; its hub learns first
            wait_for("SETTLED on pairhub's hub",
                     lambda: invoice_on(pair, invoice_id, "tok-pair")["status"] == "SETTLED")
            sap.state.pay(ar["company_code"], ar["accounting_document"], ar["fiscal_year"], total)
            wait_for("the provider's SAP delivery reconciled", lambda: [
                r for r in deliveries(provider, invoice_id, "tok-operator") if r["erp_state"] == "paid"])
            views = (invoice_on(provider, invoice_id, "tok-provider"),
                     invoice_on(pair, invoice_id, "tok-pair"))
            assert views[0] == views[1]
            assert views[0]["status"] == "SETTLED" and len(views[0]["payments"]) == 1
            assert Decimal(views[0]["paid"]) == total
            refs = {r["target"]: r["document_id"] for r in views[0]["erp_refs"]}
            assert refs == {"provider": ar["accounting_document"], "customer": str(ap["InvoiceId"])}
            assert len(sap.postings()) == 1 and len(oracle.postings("invoices")) == 1  # once into each ERP

            # the proof bundle: the pair channel's config block is its anchor
            got = provider.call("GET", f"/v1/invoices/{invoice_id}/proof", "tok-provider")
            assert got.status_code == 200, got.text
            bundle = json.loads(json.dumps(got.json()))
            report = verify_bundle(bundle, genesis_hash=pair_genesis)
            assert report.ok, report.summary()
            assert report.network_id == PAIR and report.checked["readings"] == 60
            wrong = verify_bundle(bundle, genesis_hash=billing_genesis)
            assert not wrong.ok and wrong.failed_checks() == {"anchor"}, wrong.summary()
            path = tmp_path / "pair-proof.json"
            path.write_text(json.dumps(bundle))
            cli = [sys.executable, "-m", "hub.cli", "audit", "verify", "--genesis"]
            done = subprocess.run([*cli, pair_genesis, str(path)], check=False, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            done = subprocess.run([*cli, billing_genesis, str(path)], check=False, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode != 0 and "not the expected" in done.stdout + done.stderr

        # `billing` kept billing: its month closes with every reading sent before and during the pair's
        close = _arg({"contract_id": bctr, "period": period})
        closed = json.loads(billing.submit("CloseBillingPeriod", [close], as_org=PROVIDER).payload)
        first_invoice = closed.get("invoice_id") or closed["id"]
        assert json.loads(billing.evaluate("GetInvoice", [_arg({"id": first_invoice})],
                                          as_org=PROVIDER))["readings"] == 15
    finally:
        billing.close()

    # the customer of `billing` sees its own contract through its hub, not the pair channel's (404)
    customer = HubProcess(CUSTOMER, tmp_path / "billing-customer-hub", network_json, {})
    try:
        customer.start()
        wait_for("billing's contract on CustomerMSP's hub",
                 lambda: customer.call("GET", f"/v1/contracts/{bctr}", "tok-customer").status_code == 200)
        for path in ("/v1/contracts/ctr-pair-1", f"/v1/invoices/{invoice_id}"):
            r = customer.call("GET", path, "tok-customer")
            assert r.status_code == 404, r.text
    finally:
        customer.stop()
    # its hub refuses to start on the pair channel, naming the channel and its members
    refused = HubProcess(CUSTOMER, tmp_path / "customer-on-pair", network_json, {}, channel=PAIR)
    env = {"LEDGERHUB_CONFIG": str(refused.config), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(refused.command(), env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"org {CUSTOMER} is not a member of channel '{PAIR}' (members: " in done.stderr
    # and Fabric refuses CustomerMSP's identity on the pair channel: its peer has no such ledger
    as_customer = _as_customer_on(consortium, PAIR)
    try:
        with pytest.raises(LedgerError) as no:
            as_customer.evaluate("GetContract", [_arg({"id": "ctr-pair-1"})], as_org=CUSTOMER)
        assert f"failed to get config for channel [{PAIR}]" in str(no.value)
    finally:
        as_customer.close()
    print(f"\npair channel {PAIR}: invoice {invoice_id} total {total} closed by the provider hub's "
          f"scheduler, posted once into SAP and Oracle, settled; proof pinned to {PAIR}'s genesis ok, "
          f"to billing's: anchor")
