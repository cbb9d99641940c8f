"""The SAP SOAP connector against the real WSDL (../shared/erp) and against the emulator's own WSDL, over
real HTTP(S) to the emulator: request shape and schema validity, fixed MessageHeader/UUID, sap-client,
basic auth, client certificates, and the mapping of every SAP answer / transport failure to our errors."""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import socket
import ssl
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

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
from connectors.emulators.faults import FaultPlan
from connectors.emulators.sap_soap import NS, XSD_PATH, SapSoapEmulator
from connectors.sap_soap import SapSoapConnector, sap_reference

pytestmark = pytest.mark.integration
REAL_WSDL = "sap-soap/JournalEntryCreateRequestConfirmation_In.wsdl"
INVOICE = {
    "id": "inv-ctr-mri-001-2026-10", "contract_id": "ctr-mri-001", "period": "2026-10", "currency": "EUR",
    "lines": [{"charge_id": "platform", "amount": "500.00"}, {"charge_id": "scans", "amount": "10600.00"},
              {"charge_id": "hours", "amount": "375.00"}, {"charge_id": "maximum_cap", "amount": "-100.00"}],
    "subtotal": "11375.00", "tax": "2161.25", "total": "13536.25", "issued_at": "2026-11-01T00:10:00Z",
    "provider": "ProviderMSP", "customer": "CustomerMSP", "type": "invoice",
}
SELLER = Party("ProviderMSP", "Provider GmbH", erp_ids={"sap_supplier": "300001"})
BUYER = Party("CustomerMSP", "Clinic AG", erp_ids={"sap_customer": "10100001"})


def document(**changes: object) -> InvoiceDocument:
    invoice = copy.deepcopy(INVOICE)
    invoice.update(changes)
    return InvoiceDocument(invoice=invoice, contract={}, seller=SELLER, buyer=BUYER)


def delivery(target: str = "provider") -> Delivery:
    return Delivery(id=f"dlv-{INVOICE['id']}-{target}", message_uuid=str(uuid.uuid4()),
                    invoice_id=INVOICE["id"], target=target)  # type: ignore[arg-type]


def connector(emulator: SapSoapEmulator, target: str = "provider", **settings: object) -> SapSoapConnector:
    base = {"wsdl": emulator.wsdl_url, "endpoint": emulator.endpoint, "timeout": 0.5, "sap_client": "100"}
    base.update(settings)
    return SapSoapConnector(ConnectorConfig("sap-soap", target, base))  # type: ignore[arg-type]


def real_schema(shared_erp: Path) -> etree.XMLSchema:
    wsdl = etree.parse(str(shared_erp / REAL_WSDL))
    schema = wsdl.find(".//{http://www.w3.org/2001/XMLSchema}schema")
    return etree.XMLSchema(etree.ElementTree(copy.deepcopy(schema)))


def own_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def payload(envelope: etree._Element, name: str) -> etree._Element:
    found = envelope.find(f".//{{{NS}}}{name}")
    assert found is not None, f"{name} not in the envelope"
    return etree.fromstring(etree.tostring(found))


# --- the real WSDL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["provider", "customer"])
@pytest.mark.parametrize("credit_note", [False, True])
def test_request_built_from_real_wsdl_validates_against_its_schema(shared_erp: Path, emulator, target,
                                                                   credit_note) -> None:
    conn = connector(emulator, target, wsdl=str(shared_erp / REAL_WSDL))
    doc = document(type="credit_note") if credit_note else document()
    d = delivery(target)
    request = payload(conn.build_envelope(doc, d), "JournalEntryBulkCreateRequest")
    schema = real_schema(shared_erp)
    assert schema.validate(request), schema.error_log
    assert own_schema().validate(request), "the emulator would refuse what we send to SAP"
    entry = request.find("JournalEntryCreateRequest/JournalEntry")
    assert request.findtext("MessageHeader/UUID") == d.message_uuid
    assert entry.findtext("DocumentReferenceID") == sap_reference(INVOICE["id"])
    assert entry.findtext("OriginalReferenceDocument") == sap_reference(INVOICE["id"])
    kind = "DebtorItem" if target == "provider" else "CreditorItem"
    assert entry.find(kind) is not None and entry.find(
        "CreditorItem" if target == "provider" else "DebtorItem") is None
    assert entry.findtext(f"{kind}/DocumentItemText") == INVOICE["id"]
    # the open item carries the invoice's ISO 11649 reference (PaymentReferenceID, max 30); credit notes none
    expected_ref = None if credit_note else creditor_ref.for_invoice(doc.invoice_id)
    assert entry.findtext(f"{kind}/PaymentDetails/PaymentReference") == expected_ref
    amounts = [Decimal(a.text) for a in entry.findall("*/AmountInTransactionCurrency")]
    assert sum(amounts) == 0, "a journal entry must balance"
    open_amount = Decimal(entry.findtext(f"{kind}/AmountInTransactionCurrency"))
    expected = Decimal(INVOICE["total"]) * (1 if target == "provider" else -1) * (-1 if credit_note else 1)
    assert open_amount == expected
    assert entry.findtext("AccountingDocumentType") == {
        ("provider", False): "DR", ("provider", True): "DG", ("customer", False): "KR",
        ("customer", True): "KG"}[(target, credit_note)]
    conn.close()


def test_real_wsdl_posts_to_emulator_and_parses_its_confirmation(shared_erp: Path, emulator) -> None:
    conn = connector(emulator, wsdl=str(shared_erp / REAL_WSDL))
    ref = conn.deliver(document(), delivery())
    posting = emulator.postings()[0]
    assert ref.document_id == posting["accounting_document"]
    assert ref.details["company_code"] == posting["company_code"] == "1010"
    assert ref.details["fiscal_year"] == "2026"
    assert posting["payment_reference"] == creditor_ref.for_invoice(INVOICE["id"])
    # the emulator's raw confirmation is valid under SAP's own schema, not only under ours
    conn.close()
    with SapSoapEmulator() as emu:
        emu.faults.queue("reject")
        raw = []
        for message_uuid in (str(uuid.uuid4()), str(uuid.uuid4())):
            body = conn.build_envelope(document(), Delivery("d", message_uuid, "i", "provider"))
            request = payload(body, "JournalEntryBulkCreateRequest")
            _, answer = emu.process(request, "http://schemas.xmlsoap.org/soap/envelope/", emu.faults.next())
            raw.append(payload(etree.fromstring(answer), "JournalEntryBulkCreateConfirmation"))
        schema = real_schema(shared_erp)
        for confirmation in raw:
            assert schema.validate(confirmation), schema.error_log
        assert raw[0].findtext("Log/MaximumLogItemSeverityCode") in ("3", "4")
        assert raw[1].findtext("Log/MaximumLogItemSeverityCode") == "1"


def test_soap_12_binding_of_the_real_wsdl(shared_erp: Path, emulator) -> None:
    conn = connector(emulator, wsdl=str(shared_erp / REAL_WSDL), soap_version="1.2")
    ref = conn.deliver(document(), delivery())
    assert ref.document_id == emulator.postings()[0]["accounting_document"]
    assert "http://www.w3.org/2003/05/soap-envelope" in emulator.state.requests[-1]["body"]
    conn.close()
    with pytest.raises(ConnectorConfigError, match="binding_soap12"):
        connector(emulator, soap_version="1.2")  # the emulator's own WSDL has SOAP 1.1 only


def test_own_wsdl_round_trip_and_fixed_message_uuid(emulator) -> None:
    conn = connector(emulator)
    d = delivery()
    first = conn.deliver(document(), d)
    again = conn.lookup(document(), d)  # the lookup is a resend with the same UUID
    assert again == first
    assert len(emulator.postings()) == 1
    sent = [etree.fromstring(r["body"].encode()) for r in emulator.state.requests]
    uuids = {e.findtext(f".//{{{NS}}}JournalEntryBulkCreateRequest/MessageHeader/UUID") for e in sent}
    assert uuids == {d.message_uuid}
    entry_uuids = {e.findtext(f".//{{{NS}}}JournalEntryBulkCreateRequest/JournalEntryCreateRequest/"
                              "MessageHeader/UUID") for e in sent}
    assert len(entry_uuids) == 1 and d.message_uuid not in entry_uuids
    for e in sent:  # no WS-Addressing MessageID (a fresh one per call would defeat exactly-once)
        assert e.find(".//{http://www.w3.org/2005/08/addressing}MessageID") is None
    assert all("sap-client=100" in r["path"] for r in emulator.state.requests)
    assert all(r["soap_action"] for r in emulator.state.requests)
    conn.close()


def test_registry_finds_the_sap_connector_by_entry_point(emulator) -> None:
    assert "sap-soap" in registry.names()
    conn = registry.create(ConnectorConfig("sap-soap", "provider", {"wsdl": emulator.wsdl_url,
                                                                     "endpoint": emulator.endpoint}))
    assert isinstance(conn, SapSoapConnector)
    assert conn.deliver(document(), delivery()).document_id
    conn.close()


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "error", "posted"), [
    ("error_5xx", UnclearOutcome, 0),
    ("timeout", UnclearOutcome, 1),
    ("drop_after_post", UnclearOutcome, 1),
    ("reset", UnclearOutcome, 0),
    ("reject", BusinessRejection, 0),
    ("slow", None, 1),
])
def test_each_fault_maps_to_its_error(emulator, fault, error, posted) -> None:
    emulator.faults.configure(FaultPlan(hang_seconds=1.0, slow_seconds=0.1))
    emulator.faults.queue(fault)
    conn = connector(emulator, timeout=0.4)
    d = delivery()
    if error is None:
        assert conn.deliver(document(), d).document_id
    else:
        with pytest.raises(error) as caught:
            conn.deliver(document(), d)
        if fault == "reject":
            assert any("Posting period is not open" in m for m in caught.value.erp_messages)
    if fault == "timeout":
        emulator.wait(0.8)  # the hung request posts after the client gave up
    assert len(emulator.postings()) == posted
    # whatever happened, a lookup with the same UUID settles it: exactly one posting
    ref = conn.lookup(document(), d)
    assert ref is not None and len(emulator.postings()) == 1
    assert ref.document_id == emulator.postings()[0]["accounting_document"]
    conn.close()


def test_connection_refused_is_retryable_not_unclear() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SapSoapEmulator() as emu:
        conn = connector(emu, endpoint=f"http://127.0.0.1:{port}/sap/bc/srt/scs_ext/sap/x")
    with pytest.raises(RetryableError) as caught:
        conn.deliver(document(), delivery())
    assert not isinstance(caught.value, UnclearOutcome)
    conn.close()


def test_schema_invalid_request_is_a_rejection_with_the_fault_text(emulator) -> None:
    conn = connector(emulator, company_code="TOOLONG")
    with pytest.raises(BusinessRejection) as caught:
        conn.deliver(document(), delivery())
    assert "schema" in str(caught.value)
    assert emulator.postings() == []


def test_business_check_unbalanced_entry_is_rejected_with_sap_log(emulator) -> None:
    conn = connector(emulator)
    with pytest.raises(BusinessRejection) as caught:
        conn.deliver(document(total="99.00"), delivery())
    assert any("Balance in transaction currency" in m for m in caught.value.erp_messages)
    assert emulator.postings() == []


def test_unknown_company_code_is_rejected() -> None:
    with SapSoapEmulator(company_codes={"1010"}) as emu:
        conn = connector(emu, company_code="2020")
        with pytest.raises(BusinessRejection, match="Company code 2020 is not defined"):
            conn.deliver(document(), delivery())


def test_missing_partner_number_is_a_configuration_error(emulator) -> None:
    conn = connector(emulator)
    doc = InvoiceDocument(invoice=INVOICE, contract={}, seller=SELLER, buyer=Party("CustomerMSP", "C"))
    with pytest.raises(ConnectorConfigError, match="sap_customer"):
        conn.deliver(doc, delivery())


def test_basic_auth() -> None:
    with SapSoapEmulator(username="LEDGERHUB", password="s3cret") as emu:
        with pytest.raises(RetryableError, match="401"):
            connector(emu).deliver(document(), delivery())
        conn = connector(emu, username="LEDGERHUB", password="s3cret")
        assert conn.deliver(document(), delivery()).document_id
        assert emu.state.requests[-1]["authorization"]


def test_status_reads_payments_partial_then_paid_and_cancelled(emulator) -> None:
    conn = connector(emulator)
    ref = conn.deliver(document(), delivery())
    key = (ref.details["company_code"], ref.document_id, ref.details["fiscal_year"])
    assert conn.status(ref).state == "open"
    emulator.state.pay(*key, Decimal("1000.00"))
    status = conn.status(ref)
    assert (status.state, status.paid_amount) == ("partially_paid", Decimal("1000.00"))
    assert len(status.payments) == 1
    emulator.state.pay(*key, Decimal("12536.25"))
    status = conn.status(ref)
    assert status.state == "paid" and status.paid_amount == status.amount == Decimal("13536.25")
    assert len({p.payment_id for p in status.payments}) == 2
    emulator.state.cancel(*key)
    assert conn.status(ref).state == "cancelled"


# --- TLS with a client certificate -------------------------------------------------------------


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple | None, ca: bool = False,
          ip: str | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_https_with_client_certificate(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test CA", ca_key, None, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _write(tmp_path / "ca", ca)
    _write(tmp_path / "server", _cert("sap.local", server_key, (ca, ca_key), ip="127.0.0.1"), server_key)
    _write(tmp_path / "client", _cert("LEDGERHUB", client_key, (ca, ca_key)), client_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(tmp_path / "ca.crt")
    with SapSoapEmulator(ssl_context=context) as emu:
        assert emu.endpoint.startswith("https://")
        ca_file = str(tmp_path / "ca.crt")
        wsdl = str(Path(__file__).resolve().parents[2] / "connectors/emulators/sap_journal_entry.wsdl")
        without = connector(emu, wsdl=wsdl, verify=ca_file)
        with pytest.raises((RetryableError, UnclearOutcome)):
            without.deliver(document(), delivery())
        assert emu.postings() == []
        conn = connector(emu, wsdl=wsdl, verify=ca_file, client_cert=str(tmp_path / "client.crt"),
                         client_key=str(tmp_path / "client.key"))
        assert conn.deliver(document(), delivery()).document_id
        assert len(emu.postings()) == 1
