"""The e-invoice drop connector: atomic files, nothing sent twice, access-point outcomes read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    InvoiceDocument,
    registry,
)
from connectors.ubl import UblDropConnector
from tests.integration.test_ubl_documents import BUYER, SELLER

pytestmark = pytest.mark.integration

INVOICE = {
    "id": "inv-ctr-1-2026-11",
    "contract_id": "ctr-1",
    "period": "2026-11",
    "currency": "EUR",
    "lines": [{"charge_id": "platform", "model": "flat", "quantity": "1", "amount": "500.00"}],
    "subtotal": "500.00",
    "tax": "95.00",
    "total": "595.00",
    "issued_at": "2026-12-01T01:00:00+00:00",
}
CONTRACT = {
    "id": "ctr-1",
    "timezone": "Europe/Berlin",
    "tax": {"rate": "0.19", "category": "S"},
    "metrics": {},
}
DOC = InvoiceDocument(invoice=INVOICE, contract=CONTRACT, seller=SELLER, buyer=BUYER)
DELIVERY = Delivery(
    id="dlv-1",
    message_uuid="0b1f2c3d-0000-4000-8000-000000000001",
    invoice_id=INVOICE["id"],
    target="customer",
)


def _connector(tmp_path: Path) -> UblDropConnector:
    return UblDropConnector(ConnectorConfig("ubl-drop", "customer", {"directory": str(tmp_path / "drop")}))


def test_deliver_writes_one_complete_file(tmp_path: Path) -> None:
    conn = _connector(tmp_path)
    ref = conn.deliver(DOC, DELIVERY)
    files = sorted(p.name for p in (tmp_path / "drop").iterdir() if p.is_file())
    assert files == [f"{INVOICE['id']}.xml"]
    assert Path(ref.details["path"]).read_bytes().startswith(b"<?xml")
    assert ref.document_id == INVOICE["id"]


def test_redelivery_after_pickup_sends_nothing_twice(tmp_path: Path) -> None:
    conn = _connector(tmp_path)
    first = conn.deliver(DOC, DELIVERY)
    # the access point picks the file up and moves it to sent/
    Path(first.details["path"]).rename(tmp_path / "drop" / "sent" / f"{INVOICE['id']}.xml")
    again = conn.deliver(DOC, DELIVERY)
    assert "sent" in again.details["path"]
    assert not (tmp_path / "drop" / f"{INVOICE['id']}.xml").exists()


def test_access_point_failure_is_a_business_rejection(tmp_path: Path) -> None:
    conn = _connector(tmp_path)
    (tmp_path / "drop" / "failed" / f"{INVOICE['id']}.xml").write_text("<x/>")
    (tmp_path / "drop" / "failed" / f"{INVOICE['id']}.reason").write_text("PEPPOL-EN16931-R003")
    with pytest.raises(BusinessRejection) as info:
        conn.deliver(DOC, DELIVERY)
    assert info.value.erp_messages == ["PEPPOL-EN16931-R003"]


def test_missing_master_data_is_a_configuration_error_and_nothing_is_dropped(tmp_path: Path) -> None:
    conn = _connector(tmp_path)
    incomplete = InvoiceDocument(
        invoice=INVOICE, contract=CONTRACT, seller=dataclasses.replace(SELLER, vat_id=None), buyer=BUYER
    )
    with pytest.raises(ConnectorConfigError) as info:  # the dispatcher dead-letters it with this message
        conn.deliver(incomplete, DELIVERY)
    assert info.value.code == "party_data_incomplete" and f"parties.{SELLER.org}.vat_id" in str(info.value)
    assert [p for p in (tmp_path / "drop").rglob("*") if p.is_file()] == []


def test_unsafe_invoice_id_is_refused(tmp_path: Path) -> None:
    conn = _connector(tmp_path)
    bad = InvoiceDocument(
        invoice={**INVOICE, "id": "../escape"}, contract=CONTRACT, seller=SELLER, buyer=BUYER
    )
    with pytest.raises(BusinessRejection):
        conn.deliver(bad, DELIVERY)
    assert not (tmp_path / "escape.xml").exists()


def test_registered_as_entry_point() -> None:
    assert registry.factory("ubl-drop") is UblDropConnector
