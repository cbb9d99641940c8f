"""End to end on a real Fabric network, through `Ledger` only: register an asset, propose and accept a
contract, record usage (with a duplicate and a forged message), close the period, post the invoice to
both ERPs, pay it → SETTLED. The same story runs on the embedded ledger with the same inputs, and the two
invoices must be identical apart from where and when they were committed (tx ids, blocks, timestamps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.ledger.base import ChaincodeRejected, Ledger
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
from tests.helpers.story import strip_volatile


def _arg(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def run_story(ledger: Ledger, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole billing story on `ledger`; ids carry `suffix` so runs on one channel do not collide.
    Returns (the settled invoice, the usage results of the batch holding the duplicate and the forgery)."""
    key = make_device_key(f"e2e-{suffix}")
    device, contract_id = f"mri-{suffix}", f"ctr-{suffix}"
    # September 2026 (Europe/Berlin) is over whenever this runs, so the period can be closed on wall-clock
    # transaction timestamps, which both ledgers use.
    contract = sample_contract(id=contract_id, assets=[device], start="2026-09-01")
    ledger.submit("RegisterAsset", [_arg(sample_asset(key, device))], as_org=PROVIDER)
    ledger.submit("ProposeContract", [_arg(contract)], as_org=PROVIDER)
    ledger.submit("AcceptContract", [_arg({"contract_id": contract_id})], as_org=CUSTOMER)

    readings = [
        reading(f"{suffix}-r{i}", "scan", "1", f"2026-09-{1 + i % 20:02d}T10:00:00+02:00") for i in range(120)
    ]
    readings += [
        reading(f"{suffix}-h{i}", "magnet_hours", "0.75", "2026-09-10T12:00:00+02:00") for i in range(8)
    ]
    first = signed_message(key, readings[:64], device_id=device, message_id=f"{suffix}-m1")
    second = signed_message(key, readings[64:], device_id=device, message_id=f"{suffix}-m2")
    ledger.submit("RecordUsage", [_arg({"messages": [first]})], as_org=PROVIDER)
    duplicate = signed_message(key, readings[:3], device_id=device, message_id=f"{suffix}-m1-again")
    forged = dict(signed_message(key, readings[64:66], device_id=device, message_id=f"{suffix}-forged"))
    forged["readings"] = [dict(r, quantity="1000") for r in forged["readings"]]  # signature no longer matches
    usage = json.loads(
        ledger.submit(
            "RecordUsage", [_arg({"messages": [second, duplicate, forged]})], as_org=CUSTOMER
        ).payload
    )

    period = {"contract_id": contract_id, "period": "2026-09"}
    closed = json.loads(ledger.submit("CloseBillingPeriod", [_arg(period)], as_org=PROVIDER).payload)
    invoice_id = closed["invoice_id"] if "invoice_id" in closed else closed["id"]
    for target, system in (("provider", "sap-soap"), ("customer", "oracle-rest")):
        posting = {
            "invoice_id": invoice_id,
            "target": target,
            "system": system,
            "document_id": f"{system}-{suffix}",
            "delivery_id": f"dlv-{target}-{suffix}",
        }
        ledger.submit(
            "RecordErpPosting", [_arg(posting)], as_org=PROVIDER if target == "provider" else CUSTOMER
        )
    invoice = json.loads(ledger.evaluate("GetInvoice", [_arg({"id": invoice_id})], as_org=CUSTOMER))
    payment = {"invoice_id": invoice_id, "payment_id": f"pay-{suffix}", "amount": invoice["total"]}
    ledger.submit("RecordPayment", [_arg(payment)], as_org=PROVIDER)
    with pytest.raises(ChaincodeRejected) as refused:
        ledger.submit(
            "RecordPayment",
            [_arg(dict(payment, payment_id=f"pay2-{suffix}", amount="0.01"))],
            as_org=PROVIDER,
        )
    assert refused.value.code in ("overpayment", "invalid_state_transition")
    settled = json.loads(ledger.evaluate("GetInvoice", [_arg({"id": invoice_id})], as_org=PROVIDER))
    return settled, usage


def check_story(invoice: dict[str, Any], usage: dict[str, Any]) -> None:
    assert invoice["status"] == "SETTLED"
    assert invoice["paid"] == invoice["total"]
    results = {r["message_id"].rsplit("-", 1)[-1]: r for r in usage["results"]}
    assert usage["accepted"] == 64
    assert (
        results["again"]["status"] == "rejected" and results["again"]["error"]["code"] == "duplicate_reading"
    )
    assert results["forged"]["status"] == "rejected" and results["forged"]["error"]["code"] == "bad_signature"


def embedded_invoice(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from hub.ledger.embedded import EmbeddedLedger
    from tests.helpers.embedded import make_signers

    ledger = EmbeddedLedger(tmp / "embedded", make_signers(), chaincode_orgs=(PROVIDER, CUSTOMER))
    try:
        return run_story(ledger, "e2e")
    finally:
        ledger.close()


@pytest.mark.e2e
def test_reference_story_on_the_embedded_ledger(tmp_path: Path) -> None:
    """The reference half of the comparison below, checked on its own so it is exercised without Fabric."""
    invoice, usage = embedded_invoice(tmp_path)
    check_story(invoice, usage)
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("10475.00", "1990.25", "12465.25")


@pytest.mark.fabric
@pytest.mark.e2e
def test_billing_story_on_fabric_matches_the_embedded_ledger(
    fabric_network: FabricNetwork,
    tmp_path: Path,
) -> None:
    from hub.config import Settings
    from hub.ledger.fabric import open_fabric_ledger

    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    try:
        invoice, usage = run_story(ledger, "e2e")
    finally:
        ledger.close()
    check_story(invoice, usage)
    reference, reference_usage = embedded_invoice(tmp_path)
    check_story(reference, reference_usage)
    assert strip_volatile(invoice) == strip_volatile(reference)
    assert strip_volatile(usage) == strip_volatile(reference_usage)
