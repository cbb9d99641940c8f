"""One hub per org (ADR 0065) on the embedded ledger: two hub apps, the provider's and the customer's, each
with its own database and ERP, on one ledger. Each acts as its own org only (a call for another org is
refused, never made as someone else), serves only its own org's tokens (403 `wrong_hub_org`), posts only its
own side of an invoice and records its own `RecordErpPosting`; the payment is counted once whichever hub
learns of it first; only the provider's hub closes periods. The same on a real Fabric network with hub
processes: tests/fabric/test_two_hubs_fabric.py."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from hub.billing.client import ContractClient, OrgMapping
from hub.config import SettingsError, load_settings
from hub.errors import WrongHubOrg
from tests.helpers.api import (
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    ts,
    usage,
)
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
)
from tests.helpers.delivery import sap_settings
from tests.helpers.erp import PARTIES, oracle_settings

pytestmark = pytest.mark.integration
AUDITOR = "AuditorMSP"


def test_a_hub_of_one_org_maps_only_that_org_and_refuses_every_other() -> None:
    orgs = OrgMapping(PROVIDER, CUSTOMER, AUDITOR, org=CUSTOMER)
    assert orgs(CUSTOMER) == CUSTOMER and orgs.hub_orgs == (CUSTOMER,)
    for other in (PROVIDER, AUDITOR, "OpsMSP"):
        with pytest.raises(WrongHubOrg) as refused:
            orgs(other)
        assert (refused.value.status, refused.value.code) == (403, "wrong_hub_org")
    # the all-orgs hub is as before: an org without an identity acts as the provider
    assert OrgMapping(PROVIDER, CUSTOMER, AUDITOR)("OpsMSP") == PROVIDER


def test_a_ledger_call_for_another_org_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        client = ContractClient(ledger, orgs=OrgMapping(PROVIDER, CUSTOMER, AUDITOR, org=CUSTOMER))
        height = ledger.height()
        with pytest.raises(WrongHubOrg):
            client.register_asset(sample_asset(make_device_key("x"), "dev-x"), as_org=PROVIDER)
        with pytest.raises(WrongHubOrg):  # read_as_hub asks as this hub's org only
            client.evaluate("GetAsset", {"id": "dev-x"}, as_org=AUDITOR)
        assert ledger.height() == height
    finally:
        ledger.close()


def test_the_org_setting_comes_from_the_environment_and_a_blank_one_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGERHUB_ORG", raising=False)
    assert load_settings().org is None  # the all-orgs hub stays the default
    monkeypatch.setenv("LEDGERHUB_ORG", CUSTOMER)
    assert load_settings().org == CUSTOMER
    with pytest.raises(SettingsError, match="org"):
        load_settings(org="  ")


def test_serve_with_org_builds_the_hub_of_that_org(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import hub.api.app
    from hub.cli import app

    seen: list[Any] = []
    monkeypatch.delenv("LEDGERHUB_ORG", raising=False)
    monkeypatch.setattr(hub.api.app, "create_app", lambda settings: seen.append(settings) or "app")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    result = CliRunner().invoke(app, ["serve", "--org", PROVIDER])
    assert result.exit_code == 0, result.output
    assert [s.org for s in seen] == [PROVIDER]


def _services(client: Any) -> Any:
    return client.app.state.services


def test_two_hubs_each_serve_their_org_and_post_their_own_side_once(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        ledger = embedded_ledger(tmp_path / "ledger")
        stack.callback(ledger.close)
        sap = stack.enter_context(SapSoapEmulator())
        oracle = stack.enter_context(OracleRestEmulator(shared_dir=None))

        def hub(name: str, org: str, connectors: dict[str, Any]) -> Any:
            settings = hub_settings(tmp_path / name, org=org, connectors=connectors, parties=PARTIES,
                                    close_grace_seconds=0)
            return stack.enter_context(hub_client(settings, ledger, background=False, areas=("delivery",)))

        prov = hub("provider-hub", PROVIDER, {"sap-soap": sap_settings(sap)})
        cust = hub("customer-hub", CUSTOMER, {"oracle-rest": oracle_settings(oracle)})

        key = make_device_key("two-hubs")
        period, start = last_month()
        contract = sample_contract(id="ctr-two-hubs", assets=["dev-two-hubs"], start=start,
                                   erp={"provider": "sap-soap", "customer": "oracle-rest"})
        assert prov.post("/v1/assets", json=sample_asset(key, "dev-two-hubs"),
                         headers=auth("tok-provider")).status_code == 201
        assert prov.post("/v1/contracts", json=contract, headers=auth("tok-provider")).status_code == 201
        # another org's token is refused by a hub, before anything is done
        for client, token, method, path in (
            (prov, "tok-customer", "post", "/v1/contracts/ctr-two-hubs/accept"),
            (cust, "tok-provider", "get", "/v1/contracts/ctr-two-hubs"),
            (cust, "tok-auditor", "get", "/v1/contracts/ctr-two-hubs"),
        ):
            refused = getattr(client, method)(path, headers=auth(token))
            assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org", refused.text
        accepted = cust.post("/v1/contracts/ctr-two-hubs/accept", headers=auth("tok-customer"))
        assert accepted.status_code == 200 and accepted.json()["status"] == "ACTIVE", accepted.text

        readings = [reading(f"r{i}", "scan", "1", ts(period, 1 + i % 27)) for i in range(30)]
        message = usage(key, "two-hubs-m1", readings, device_id="dev-two-hubs")
        refused = post_usage(cust, message)  # the device's org (the provider) is served by its own hub
        assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org"
        posted = post_usage(prov, message, wait="true")
        assert posted.status_code in (200, 201, 202), posted.text

        for client in (prov, cust):
            _services(client).projector.catch_up(timeout=0.2)
        # only the provider's hub closes the periods of the contracts its org provides
        assert _services(cust).closer.due() == []
        assert [(c.id, p) for c, p in _services(prov).closer.due()] == [("ctr-two-hubs", period)]
        (invoice_id,) = _services(prov).closer.run_once()

        for client in (prov, cust):
            _services(client).delivery.run_until_idle()
        # each hub holds and posts only its own org's side, once
        for client, target in ((prov, "provider"), (cust, "customer")):
            rows = _services(client).delivery.list()
            assert [(d["target"], d["state"]) for d in rows] == [(target, "delivered")]
        assert [p["partner_kind"] for p in sap.postings() if p["item_text"] == invoice_id] == ["debtor"]
        (ap,) = oracle.postings("invoices")
        assert ap["InvoiceNumber"] == invoice_id and oracle.postings("receivablesInvoices") == []
        invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=CUSTOMER))
        assert {r["target"]: r["system"] for r in invoice["erp_refs"]} == {"provider": "sap-soap",
                                                                           "customer": "oracle-rest"}
        total = Decimal(invoice["total"])

        # the customer learns of the payment first (its AP paid), then the provider's SAP shows it too
        oracle.pay("invoices", int(ap["InvoiceId"]), total)
        assert _services(cust).delivery.reconcile_once().payments_recorded == 1
        (ar,) = [p for p in sap.postings() if p["item_text"] == invoice_id]
        sap.state.pay(ar["company_code"], ar["accounting_document"], ar["fiscal_year"], total)
        report = _services(prov).delivery.reconcile_once()
        assert (report.payments_recorded, report.errors) == (0, [])

        views = [c.get(f"/v1/invoices/{invoice_id}", headers=auth(t)) for c, t in
                 ((prov, "tok-provider"), (cust, "tok-customer"))]
        assert all(v.status_code == 200 for v in views), [v.text for v in views]
        assert views[0].json() == views[1].json()
        assert views[0].json()["status"] == "SETTLED" and len(views[0].json()["payments"]) == 1


def test_each_side_records_only_the_increase_so_partial_payments_count_once(tmp_path: Path) -> None:
    """Half paid seen by the customer's hub, all paid seen by the provider's, then all by the customer's:
    the ledger holds exactly the total, in two payments."""
    from types import SimpleNamespace

    from connectors.base import ErpStatus, Payment
    from hub.delivery.reconcile import shared_balance_payments

    invoice: Any = SimpleNamespace(paid=Decimal("50.00"))  # the ledger's paid so far: all the function reads
    sap = ErpStatus(state="partially_paid", amount=Decimal("100"), paid_amount=Decimal("0"),
                    currency="EUR", payments=(Payment(payment_id="P1", amount=Decimal("50.00")),
                                              Payment(payment_id="P2", amount=Decimal("50.00"))))
    (payment,) = shared_balance_payments(sap, invoice)
    assert (payment.payment_id, payment.amount) == ("paid-to-date:100", Decimal("50.00"))
    oracle = ErpStatus(state="paid", amount=Decimal("100"), paid_amount=Decimal("50.0"), currency="EUR")
    assert shared_balance_payments(oracle, invoice) == []
