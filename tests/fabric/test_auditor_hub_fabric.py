"""The auditor's node answers audit queries from its own peer (issue 20, ADR 0066): beside the provider's
and the customer's hubs (ADR 0065) an auditor runs `ledgerhub serve --org AuditorMSP`. Its ledger holds the
auditor's identity and the auditor peer's gateway only; it answers the invoice the two other hubs produced
and its proof bundle, which verifies offline (`ledgerhub audit verify`, pinned to the genesis hash the
auditor read from its own peer); it cannot act for another org (`403 wrong_hub_org`). And what ADR 0066
states about Fabric: its peer, though the auditor is no party to the contract, holds the contract's
prices and readings in its blocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.audit.verify import verify_bundle
from tests.helpers.api import last_month, ts
from tests.helpers.chaincode import (
    AUDITOR,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.hub_process import HubProcess, close_period, two_hubs

pytestmark = [pytest.mark.fabric, pytest.mark.e2e]


def test_the_auditor_hub_holds_only_its_peer_and_identity_and_proves_the_invoice_of_two_hubs(
        fabric_network: FabricNetwork, tmp_path: Path) -> None:
    from hub.billing.client import ContractClient, OrgMapping
    from hub.config import Settings
    from hub.errors import WrongHubOrg
    from hub.ledger.base import LedgerError
    from hub.ledger.fabric import open_fabric_ledger

    # what `serve --org AuditorMSP` opens: the auditor's identity and the auditor peer's gateway, nothing else
    settings = Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json, org=AUDITOR,
                        data_dir=tmp_path / "auditor-probe")
    ledger = open_fabric_ledger(settings)
    try:
        auditor_peer = fabric_network.org("auditor")
        assert auditor_peer.mspid == AUDITOR
        assert {org: e.address for org, e in ledger._endpoints.items()} == {AUDITOR: auditor_peer.endpoint}
        assert auditor_peer.endpoint not in {fabric_network.org(k).endpoint for k in ("provider", "customer")}
        assert ledger.identity(AUDITOR).msp_id == AUDITOR
        with pytest.raises(LedgerError, match="no identity"):
            ledger.identity(PROVIDER)
        with pytest.raises(WrongHubOrg):
            ContractClient(ledger, orgs=OrgMapping.from_settings(settings, ledger)).register_asset(
                sample_asset(make_device_key("auditor-as-provider"), "dev-aud-x"), as_org=PROVIDER)
        genesis = bytes(ledger.block(0).hash).hex()  # the anchor, read from the auditor's own peer
        first_block = ledger.height()
    finally:
        ledger.close()

    with two_hubs(fabric_network.network_json, tmp_path) as (provider, customer, _sap, _oracle):
        auditor = HubProcess(AUDITOR, tmp_path / "auditor-hub", fabric_network.network_json, {})
        try:
            auditor.start()
            key = make_device_key("auditor-hub-fabric")
            period, start = last_month()
            contract = sample_contract(id="ctr-aud-1", assets=["dev-aud-1"], start=start,
                                       erp={"provider": "sap-soap", "customer": "oracle-rest"})
            assert provider.call("POST", "/v1/assets", "tok-provider",
                                 json=sample_asset(key, "dev-aud-1")).status_code == 201
            assert provider.call("POST", "/v1/contracts", "tok-provider", json=contract).status_code == 201
            r = customer.call("POST", "/v1/contracts/ctr-aud-1/accept", "tok-customer")
            assert r.status_code == 200, r.text
            rs = [reading(f"aud-r{i}", "scan", "1", ts(period, 1 + i % 27, 9)) for i in range(12)]
            message = signed_message(key, rs, device_id="dev-aud-1", message_id="aud-m0")
            r = provider.call("POST", "/v1/usage", "tok-device", json=message, params={"wait": "true"})
            assert r.status_code in (200, 201, 202), r.text
            invoice_id = close_period(provider, "ctr-aud-1", period)

            # the auditor's hub refuses to act for another org, before any ledger call
            for token, path in (("tok-provider", "/v1/contracts/ctr-aud-1/accept"),
                                ("tok-customer", "/v1/contracts/ctr-aud-1/accept")):
                refused = auditor.call("POST", path, token)
                assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org", refused.text
            refused = auditor.call("POST", "/v1/usage", "tok-device", json=message)
            assert refused.status_code == 403 and refused.json()["code"] == "wrong_hub_org", refused.text

            # it answers the invoice from its own peer, as the provider's hub does
            mine = auditor.call("GET", f"/v1/invoices/{invoice_id}", "tok-auditor")
            assert mine.status_code == 200, mine.text
            theirs = provider.call("GET", f"/v1/invoices/{invoice_id}", "tok-provider").json()
            assert mine.json()["total"] == theirs["total"] and mine.json()["readings"] == 12
            assert mine.json()["id"] == invoice_id and mine.json()["contract_id"] == "ctr-aud-1"

            got = auditor.call("GET", f"/v1/invoices/{invoice_id}/proof", "tok-auditor")
            assert got.status_code == 200, got.text
            bundle = got.json()
            assert bundle["ledger"]["kind"] == "fabric" and bundle["invoice"]["id"] == invoice_id
            report = verify_bundle(json.loads(json.dumps(bundle)), genesis_hash=genesis)
            assert report.ok, report.summary()
            assert report.checked["readings"] == 12 and report.checked["recomputed invoice"] == 1
            path = tmp_path / "proof.json"
            path.write_text(json.dumps(bundle))
            cli = [sys.executable, "-m", "hub.cli", "audit", "verify", "--genesis", genesis, str(path)]
            done = subprocess.run(cli, check=False, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            # and a wrong anchor fails the same offline check (the test can fail)
            forged = subprocess.run([*cli[:-3], "--genesis", "00" * 32, str(path)], check=False,
                                    capture_output=True, text=True, timeout=300)
            assert forged.returncode != 0, forged.stdout + forged.stderr
        finally:
            auditor.stop()

    # what Fabric enforces (ADR 0066): the auditor is no party to the contract, yet its peer received every
    # block, with the contract's prices and the device's readings in the clear
    ledger = open_fabric_ledger(settings)
    try:
        blocks = [bytes(ledger.block(n).raw["block"]) for n in range(first_block, ledger.height())]
    finally:
        ledger.close()
    proposed = [b for b in blocks if b"ctr-aud-1" in b and b'"unit_price"' in b]
    assert proposed and b'"85.00"' in proposed[0]
    assert [b for b in blocks if b"aud-r0" in b and b"dev-aud-1" in b]
