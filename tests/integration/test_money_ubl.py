"""The documents ADR 0051 adds are valid e-invoices: an interim invoice, the final invoice that deducts it,
and the credit note refunding a prepaid balance each pass the EN 16931 validator (zero failed assertions)."""

from __future__ import annotations

import pytest

from connectors.base import InvoiceDocument
from connectors.ubl import build_ubl
from connectors.ubl_validation import UblValidator
from tests.helpers.chaincode import (
    CONTRACT_ID,
    NOV_END,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    reading,
    signed_message,
)
from tests.integration.test_ubl_documents import BUYER, SELLER

pytestmark = pytest.mark.integration
KEY = make_device_key("money-ubl")


def _scans(n: int, first: int) -> dict:
    readings = [reading(f"s-{first + i}", "scan", "1", f"2026-11-{2 + i % 10:02d}T10:{i:02d}:00+01:00")
                for i in range(n)]
    return signed_message(KEY, readings, message_id=f"m-{first}")


def test_interim_final_and_refund_documents_pass_en16931(validator: UblValidator) -> None:
    ledger = ChaincodeLedger()
    contract = active_contract(ledger, KEY, billing_threshold="3000.00", end="2026-11-30")
    ledger.submit("TopUpPrepaid", {"contract_id": CONTRACT_ID, "top_up_id": "t-1", "amount": "20000.00"})
    ledger.submit("RecordUsage", {"messages": [_scans(33, 0)]})
    interim = ledger.submit("IssueInterimInvoice", {"contract_id": CONTRACT_ID, "period": "2026-11"})
    ledger.submit("RecordUsage", {"messages": [_scans(7, 100)]})
    final = ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, at=NOV_END)
    note = ledger.submit("RefundPrepaid", {"contract_id": CONTRACT_ID})
    assert final["interim_invoices"] == [interim["id"]]
    for document in (interim, final, note):
        xml = build_ubl(InvoiceDocument(invoice=document, contract=contract, seller=SELLER, buyer=BUYER))
        assert [str(f) for f in validator.validate(xml)] == [], document["id"]
