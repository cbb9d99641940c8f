"""The real billing contract on the embedded ledger: asset, contract (both orgs), usage, period close,
posting, payment — with the endorsements docs/chaincode.md requires, and a chain that verifies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from hub.ledger.base import ChaincodeRejected
from hub.ledger.embedded import EmbeddedLedger
from hub.ledger.verify import verify_ledger
from tests.helpers.chaincode import (
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    MID_NOV,
    PROVIDER,
    example_usage,
    make_device_key,
    sample_asset,
    sample_contract,
)
from tests.helpers.embedded import Clock, contract_ledger, make_signers

pytestmark = pytest.mark.integration


def _j(obj: Any) -> list[str]:
    return [json.dumps(obj)]


def _endorsers(led: EmbeddedLedger, tx_id: str) -> list[str]:
    return sorted(e.msp_id for e in led.tx(tx_id).endorsements)


def test_billing_contract_life_cycle(tmp_path: Path) -> None:
    clock = Clock(MID_NOV)
    signers = make_signers()
    led = contract_ledger(tmp_path / "ledger", clock, signers=signers, synchronous="FULL")
    try:
        key = make_device_key()
        reg = led.submit("RegisterAsset", _j(sample_asset(key)), as_org=PROVIDER)
        assert _endorsers(led, reg.tx_id) == [PROVIDER]
        proposed = led.submit("ProposeContract", _j(sample_contract()), as_org=PROVIDER)
        assert _endorsers(led, proposed.tx_id) == [PROVIDER]
        height = led.height()
        with pytest.raises(ChaincodeRejected) as again:
            led.submit("ProposeContract", _j(sample_contract(currency="USD")), as_org=PROVIDER)
        assert again.value.code == "contract_exists"
        assert led.height() == height
        accepted = led.submit("AcceptContract", _j({"contract_id": CONTRACT_ID}), as_org=CUSTOMER)
        assert _endorsers(led, accepted.tx_id) == [CUSTOMER, PROVIDER]
        contract = json.loads(led.evaluate("GetContract", _j({"id": CONTRACT_ID}), as_org=CUSTOMER))
        assert contract["status"] == "ACTIVE"

        # usage: cheap, one org endorses; two messages in one transaction
        messages = example_usage(key, messages=2)
        usage = led.submit("RecordUsage", _j({"messages": messages}), as_org=PROVIDER)
        body = json.loads(usage.payload)
        assert body["accepted"] == 170
        assert _endorsers(led, usage.tx_id) == [PROVIDER]
        # a resend is refused message by message, and changes nothing
        height = led.height()
        resend = led.submit("RecordUsage", _j({"messages": messages}), as_org=CUSTOMER)
        assert [r["status"] for r in json.loads(resend.payload)["results"]] == ["rejected", "rejected"]
        assert led.height() == height + 1  # an accepted transaction that wrote nothing
        assert led.tx(resend.tx_id).raw["rwset"]["writes"] == []

        cost = json.loads(
            led.evaluate("GetUsage", _j({"contract_id": CONTRACT_ID, "period": "2026-11"}), as_org=CUSTOMER)
        )
        assert cost["status"] == "OPEN"
        assert cost["cost"]["total"] == "13655.25"
        readings = json.loads(
            led.evaluate(
                "GetReadings", _j({"contract_id": CONTRACT_ID, "period": "2026-11"}), as_org=CUSTOMER
            )
        )["readings"]
        assert len(readings) == 170  # a partial composite key scan over committed state

        # closing the period after it ended: invoice, both orgs endorse
        clock.now = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
        closed = led.submit(
            "CloseBillingPeriod", _j({"contract_id": CONTRACT_ID, "period": "2026-11"}), as_org=PROVIDER
        )
        assert _endorsers(led, closed.tx_id) == [CUSTOMER, PROVIDER]
        invoice = json.loads(closed.payload)
        inv = invoice.get("invoice", invoice)
        assert inv["total"] == "13655.25"
        rec = led.tx(closed.tx_id)
        assert rec.event is not None and rec.event.name == "InvoiceIssued"
        invoice_id = inv["id"]
        # closing again returns the same invoice and writes nothing
        again_closed = led.submit(
            "CloseBillingPeriod", _j({"contract_id": CONTRACT_ID, "period": "2026-11"}), as_org=CUSTOMER
        )
        assert json.loads(again_closed.payload) == invoice
        assert led.tx(again_closed.tx_id).raw["rwset"]["writes"] == []

        posting = led.submit(
            "RecordErpPosting",
            _j(
                {
                    "invoice_id": invoice_id,
                    "target": "provider",
                    "system": "sap-soap",
                    "document_id": "5100000001",
                    "delivery_id": "d-1",
                }
            ),
            as_org=PROVIDER,
        )
        assert _endorsers(led, posting.tx_id) == [CUSTOMER, PROVIDER]
        paid = led.submit(
            "RecordPayment",
            _j({"invoice_id": invoice_id, "payment_id": "pay-1", "amount": "13655.25"}),
            as_org=CUSTOMER,
        )
        assert _endorsers(led, paid.tx_id) == [CUSTOMER, PROVIDER]
        final = json.loads(led.evaluate("GetInvoice", _j({"id": invoice_id}), as_org=PROVIDER))
        assert final["status"] == "SETTLED"

        names = [e.name for e in led.events(0, timeout=0.05)]
        assert names[:2] == ["ContractProposed", "ContractActivated"]
        assert "UsageRecorded" in names and names[-3:] == [
            "InvoiceIssued",
            "InvoicePosted",
            "PaymentRecorded",
        ]
        report = verify_ledger(led)
        assert report.ok, report.summary()
        assert json.loads(led.evaluate("GetAsset", _j({"id": DEVICE_ID}), as_org=CUSTOMER))[
            "contract_id"
        ] == (CONTRACT_ID)
    finally:
        led.close()
