"""SAP OData connector against the emulator over real HTTP, the emulator shaped by the real EDMX files."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaincode import creditor_ref
from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    InvoiceDocument,
    Party,
    RetryableError,
    UnclearOutcome,
    registry,
)
from connectors.emulators.faults import ALL_FAULTS, FaultPlan
from connectors.emulators.sap_odata import SapODataEmulator, check_properties
from connectors.sap_odata import (
    SUPPLIER_INVOICE_SRV,
    SapODataConnector,
    from_sap_date,
    sap_reference,
    to_sap_date,
)
from tests.helpers.erp import (
    StatusServer,
    check_emulator_controls,
    sample_delivery,
    sample_document,
    sample_invoice,
    track,
)

pytestmark = pytest.mark.integration

SELLER = Party(org="ProviderMSP", name="MedLease GmbH", erp_ids={"sap_supplier": "17300001"})
BUYER = Party(org="CustomerMSP", name="Klinikum Mitte", erp_ids={"sap_customer": "10100001"})
invoice = sample_invoice


def doc(n: int = 1, **kw: Any) -> InvoiceDocument:
    return sample_document(SELLER, BUYER, n, **kw)


def delivery(target: str = "customer", n: int = 1, attempt: int = 1) -> Delivery:
    return sample_delivery(target, n, attempt)


@pytest.fixture
def emulator(shared_erp: Path):
    with SapODataEmulator(metadata_dir=shared_erp / "sap-odata") as em:
        assert em.shaped_by_real_metadata
        yield em


def connector(em: SapODataEmulator, target: str = "customer", **settings) -> SapODataConnector:
    base = {
        "base_url": em.base_url,
        "username": "LEDGERHUB",
        "password": "Welcome1",
        "sap_client": "100",
        "company_code": "1010",
        "timeout": 2,
    }
    conn = SapODataConnector(ConnectorConfig("sap-odata", target, {**base, **settings}))  # type: ignore[arg-type]
    track(conn)
    return conn


def test_payload_fits_the_real_entity_types(emulator: SapODataEmulator) -> None:
    body = connector(emulator).supplier_invoice(doc())
    check_properties("A_SupplierInvoiceType", body, emulator.types)  # names, lengths, precision, dates
    for item in body["to_SupplierInvoiceItemGLAcct"]["results"]:
        check_properties("A_SupplierInvoiceItemGLAcctType", item, emulator.types)
    for tax in body["to_SupplierInvoiceTax"]["results"]:
        check_properties("A_SupplierInvoiceTaxType", tax, emulator.types)
    assert len(body["SupplierInvoiceIDByInvcgParty"]) <= 16
    assert body["PaymentReference"] == creditor_ref.for_invoice(doc().invoice_id)  # MaxLength 30: above
    assert body["InvoiceGrossAmount"] == "13655.25" and isinstance(body["InvoiceGrossAmount"], str)


def test_metadata_is_the_real_edmx(emulator: SapODataEmulator, shared_erp: Path) -> None:
    r = httpx.get(f"{emulator.base_url}{SUPPLIER_INVOICE_SRV}/$metadata", auth=("LEDGERHUB", "Welcome1"))
    assert r.content == (shared_erp / "sap-odata" / "API_SUPPLIERINVOICE_PROCESS_SRV.edmx").read_bytes()


def test_emulator_refuses_what_sap_refuses(emulator: SapODataEmulator) -> None:
    body = connector(emulator).supplier_invoice(doc())
    for bad, code in [
        ({**body, "NoSuchField": "x"}, "/IWBEP/CM_MGW_RT/020"),
        ({**body, "DocumentHeaderText": "x" * 26}, "/IWBEP/CM_MGW_RT/022"),
        ({**body, "PostingDate": "2026-11-01"}, "/IWBEP/CM_MGW_RT/024"),
        ({**body, "SupplierInvoiceStatus": "5", "CreationDate": "/Date(0)/"}, "/IWBEP/CM_MGW_RT/021"),
    ]:
        with pytest.raises(Exception) as info:
            emulator.create_supplier_invoice(bad)
        assert getattr(info.value, "code", None) == code


def test_dates_round_trip() -> None:
    day = dt.date(2026, 11, 1)
    assert to_sap_date(day) == "/Date(1793491200000)/"
    assert from_sap_date(to_sap_date(day)).date() == day


def test_csrf_token_and_cookies_are_required(emulator: SapODataEmulator) -> None:
    url = f"{emulator.base_url}{SUPPLIER_INVOICE_SRV}/A_SupplierInvoice"
    r = httpx.post(url, json={}, auth=("LEDGERHUB", "Welcome1"))
    assert r.status_code == 403 and r.headers["x-csrf-token"] == "Required"
    assert emulator.postings() == []


def test_supplier_invoice_posted_once_and_found(emulator: SapODataEmulator) -> None:
    conn = connector(emulator)
    ref = conn.deliver(doc(), delivery())
    (posted,) = emulator.postings()
    assert posted["SupplierInvoiceIDByInvcgParty"] == sap_reference(invoice()["id"])
    assert Decimal(posted["InvoiceGrossAmount"]) == Decimal("13655.25")
    assert conn.lookup(doc(), delivery()) == ref
    assert conn.deliver(doc(), delivery()) == ref  # SAP's duplicate check (M8/108) resolved by look-up
    assert emulator.state.creates == 1
    assert conn.status(ref).state == "open"
    number, year = ref.document_id.split("/")
    httpx.post(f"{emulator.base_url}/_emulator/supplier-invoices/{number}/{year}/reverse", json={})
    assert conn.status(ref).state == "cancelled"


def test_lost_session_refetches_token_once(emulator: SapODataEmulator) -> None:
    conn = connector(emulator)
    conn.deliver(doc(1), delivery(n=1))
    emulator.lose_next_sessions = 1
    conn.deliver(doc(2), delivery(n=2))
    assert emulator.csrf_rejections == 1 and emulator.state.creates == 2
    emulator.lose_next_sessions = 2  # refused again with a fresh token: retry later, nothing posted
    with pytest.raises(RetryableError):
        conn.deliver(doc(3), delivery(n=3))
    assert emulator.state.creates == 2


def test_business_rejection_carries_sap_message(emulator: SapODataEmulator) -> None:
    with pytest.raises(BusinessRejection) as info:
        connector(emulator).deliver(doc(total="1.00"), delivery())
    assert any("M8/534" in m for m in info.value.erp_messages)
    assert emulator.postings() == []


def test_provider_side_reads_billing_document_and_journal(emulator: SapODataEmulator) -> None:
    conn = connector(emulator, "provider")
    with pytest.raises(ConnectorConfigError):
        conn.deliver(doc(), delivery("provider"))
    assert conn.lookup(doc(), delivery("provider")) is None
    created = httpx.post(
        f"{emulator.base_url}/_emulator/billing-documents",
        json={"reference": sap_reference(invoice()["id"]), "payer": "10100001", "amount": "13655.25"},
    ).json()
    ref = conn.lookup(doc(), delivery("provider"))
    assert ref is not None and ref.document_id == created["BillingDocument"]
    assert conn.status(ref).state == "open"
    httpx.post(
        f"{emulator.base_url}/_emulator/billing-documents/{ref.document_id}/payments", json={"amount": "5000"}
    )
    status = conn.status(ref)
    assert (status.state, status.paid_amount) == ("partially_paid", Decimal("5000.00"))
    httpx.post(
        f"{emulator.base_url}/_emulator/billing-documents/{ref.document_id}/payments",
        json={"amount": "8655.25"},
    )
    assert conn.status(ref).state == "paid"


def test_partial_payment_is_never_an_estimate_when_the_customer_has_other_open_documents(
    emulator: SapODataEmulator,
) -> None:
    """The journal items this API offers are per customer, not per document: with a second open billing
    document the customer's open amount cannot be split, so a partial payment reads as 0 paid (nothing
    recorded on the ledger yet) and the full amount once SAP clears the document."""
    conn = connector(emulator, "provider")

    def billing_document(reference: str, amount: str) -> str:
        created = httpx.post(
            f"{emulator.base_url}/_emulator/billing-documents",
            json={"reference": reference, "payer": "10100001", "amount": amount},
        )
        return str(created.json()["BillingDocument"])

    def pay(number: str, amount: str) -> None:
        url = f"{emulator.base_url}/_emulator/billing-documents/{number}/payments"
        httpx.post(url, json={"amount": amount})

    ours = billing_document(sap_reference(invoice()["id"]), "13655.25")
    other = billing_document("OTHER-INV-1", "4000.00")
    ref = conn.lookup(doc(), delivery("provider"))
    assert ref is not None and ref.document_id == ours
    pay(ours, "5000")
    status = conn.status(ref)
    # the old reading was 13655.25 - (8655.25 + 4000.00) = 1000.00 paid: a wrong amount for the ledger
    assert (status.state, status.paid_amount) == ("partially_paid", Decimal(0))
    pay(other, "4000.00")  # the other document cleared: the customer's open items are now ours alone
    assert conn.status(ref).paid_amount == Decimal("5000.00")
    pay(ours, "8655.25")
    assert (conn.status(ref).state, conn.status(ref).paid_amount) == ("paid", Decimal("13655.25"))


def test_batch_reads_several_in_one_round_trip(emulator: SapODataEmulator) -> None:
    conn = connector(emulator)
    refs = [conn.deliver(doc(n), delivery(n=n)) for n in (1, 2)]
    paths = [
        f"A_SupplierInvoice(SupplierInvoice='{r.document_id.split('/')[0]}',FiscalYear='2026')" for r in refs
    ]
    results = conn.batch_read(paths)
    assert [r["d"]["SupplierInvoice"] for r in results] == [r.document_id.split("/")[0] for r in refs]


def test_registered_as_entry_point() -> None:
    assert registry.factory("sap-odata") is SapODataConnector


@pytest.mark.faults
def test_exactly_once_under_faults(emulator: SapODataEmulator) -> None:
    """200 invoices, 30% faults of every kind, lost sessions: each posted exactly once or dead-lettered."""
    emulator.faults.configure(
        FaultPlan(probability=0.3, kinds=ALL_FAULTS, seed=11, hang_seconds=0.6, slow_seconds=0.02)
    )
    emulator.csrf_loss_probability = 0.05
    conn = connector(emulator, timeout=0.3)
    delivered, dead = {}, {}
    for n in range(200):
        attempt = 1
        while True:
            try:
                delivered[n] = conn.deliver(doc(n), delivery(n=n, attempt=attempt))
                break
            except (UnclearOutcome, RetryableError):
                attempt += 1
                assert attempt < 20
            except BusinessRejection as exc:
                dead[n] = exc.erp_messages
                break
    assert set(emulator.faults.snapshot()["injected"]) == set(ALL_FAULTS)
    assert emulator.csrf_rejections > 0
    assert dead and all(dead.values())
    refs = [p["SupplierInvoiceIDByInvcgParty"] for p in emulator.postings()]
    assert len(refs) == len(set(refs)) == len(delivered) == 200 - len(dead)


def test_emulator_control_endpoints(emulator) -> None:
    def post_one() -> None:
        connector(emulator).deliver(doc(1), delivery("customer", 1))

    check_emulator_controls(emulator.base_url, post_one, emulator.postings)


@pytest.mark.parametrize(("status", "error"), [(503, RetryableError), (401, ConnectorConfigError)])
def test_csrf_fetch_failure_is_retryable_only_when_sap_is_down(status: int, error: type[Exception]) -> None:
    with StatusServer(status) as sap:
        conn = SapODataConnector(ConnectorConfig("sap-odata", "customer", {"base_url": sap.base_url}))
        try:
            with pytest.raises(error) as info:
                conn.deliver(doc(72), delivery("customer", 72))
        finally:
            conn.close()
    assert not isinstance(info.value, UnclearOutcome)  # nothing was sent
