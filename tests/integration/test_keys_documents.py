"""Signed invoice documents with the HSM documents key: detached JWS (JSON) and XMLDSig (UBL XML)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from hub.keys.documents import (
    DS,
    EXT,
    DocumentSignatureError,
    sign_invoice_json,
    sign_xml,
    verify_invoice_json,
    verify_xml,
)
from hub.keys.signer import SoftwareSigner

pytestmark = [pytest.mark.integration, pytest.mark.hsm]

INVOICE = {
    "invoice_id": "INV-2026-11-0001",
    "contract_id": "lease-mri-01",
    "currency": "EUR",
    "lines": [{"metric": "scan", "quantity": "412", "amount": "6180.00"}],
    "total": "7354.20",
}

UBL = b"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
         xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
         xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>
  <cbc:ID>INV-2026-11-0001</cbc:ID>
  <cbc:IssueDate>2026-12-01</cbc:IssueDate>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cac:LegalMonetaryTotal>
    <cbc:PayableAmount currencyID="EUR">7354.20</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>
</Invoice>
"""


@pytest.fixture
def doc_signer(hsm_manager):
    return hsm_manager.signer("documents-ProviderMSP", "invoice-document")


def _flip(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("B" if ch != "B" else "C") + text[index + 1 :]


def test_jws_verifies_with_the_published_certificate_or_the_ca(doc_signer, hsm_manager) -> None:
    jws = sign_invoice_json(INVOICE, doc_signer)
    header_b64, payload, _sig = jws.split(".")
    assert payload == ""  # detached
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    assert header["alg"] == "ES256" and header["kid"] == doc_signer.key_id
    published = hsm_manager.certificate("documents-ProviderMSP")
    assert base64.b64decode(header["x5c"][0]) == published.public_bytes(serialization.Encoding.DER)
    assert verify_invoice_json(INVOICE, jws, certificate=published).key_id == doc_signer.key_id
    ca = hsm_manager.certificate("ca-ProviderMSP")
    reordered = dict(reversed(INVOICE.items()))
    assert verify_invoice_json(reordered, jws, ca_certificate=ca).certificate == published


def test_jws_fails_after_a_one_byte_change(doc_signer, hsm_manager) -> None:
    published = hsm_manager.certificate("documents-ProviderMSP")
    jws = sign_invoice_json(INVOICE, doc_signer)
    changed = {**INVOICE, "total": "7354.21"}
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json(changed, jws, certificate=published)
    assert exc.value.code == "bad_signature"
    tampered = _flip(jws, len(jws) - 10)
    with pytest.raises(DocumentSignatureError):
        verify_invoice_json(INVOICE, tampered, certificate=published)


def test_jws_refusals_have_codes(doc_signer, hsm_manager) -> None:
    published = hsm_manager.certificate("documents-ProviderMSP")
    jws = sign_invoice_json(INVOICE, doc_signer)
    header_b64, _, sig = jws.split(".")
    other = hsm_manager.certificate("client-ProviderMSP")
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json(INVOICE, jws, certificate=other)
    assert exc.value.code == "key_mismatch"
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json(INVOICE, f"{none_header}..{sig}", certificate=published)
    assert exc.value.code == "bad_jws"
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json(INVOICE, f"{header_b64}.e30.{sig}", certificate=published)
    assert exc.value.code == "bad_jws"
    with pytest.raises(DocumentSignatureError) as exc:
        verify_invoice_json(INVOICE, jws, ca_certificate=hsm_manager.certificate("ca-CustomerMSP"))
    assert exc.value.code == "untrusted_certificate"


def test_jws_of_a_rotated_key_still_verifies_with_its_old_certificate(doc_signer, hsm_manager) -> None:
    old_cert = hsm_manager.certificate("documents-ProviderMSP")
    jws = sign_invoice_json(INVOICE, doc_signer)
    hsm_manager.rotate("documents-ProviderMSP")
    new_jws = sign_invoice_json(INVOICE, doc_signer)
    assert verify_invoice_json(INVOICE, jws, certificate=old_cert)
    ca = hsm_manager.certificate("ca-ProviderMSP")
    kid = verify_invoice_json(INVOICE, new_jws, ca_certificate=ca).key_id
    assert hsm_manager.find_key_id(kid) == ("documents-ProviderMSP", 2)


def test_ubl_xml_signature_verifies_and_sits_in_ubl_extensions(doc_signer, hsm_manager) -> None:
    signed = sign_xml(UBL, doc_signer)
    root = etree.fromstring(signed)
    assert root[0].tag == f"{{{EXT}}}UBLExtensions"
    assert root.find(f".//{{{DS}}}Signature") is not None
    published = hsm_manager.certificate("documents-ProviderMSP")
    assert verify_xml(signed, certificate=published).key_id == doc_signer.key_id
    assert verify_xml(signed, ca_certificate=hsm_manager.certificate("ca-ProviderMSP"))


def test_xml_signature_fails_after_a_one_byte_change(doc_signer, hsm_manager) -> None:
    published = hsm_manager.certificate("documents-ProviderMSP")
    signed = sign_xml(UBL, doc_signer)
    amount = signed.replace(b">7354.20<", b">7354.29<")
    assert amount != signed and len(amount) == len(signed)
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(amount, certificate=published)
    assert exc.value.code == "digest_mismatch"
    attr = signed.replace(b'currencyID="EUR"', b'currencyID="EUX"')
    with pytest.raises(DocumentSignatureError):
        verify_xml(attr, certificate=published)
    root = etree.fromstring(signed)
    value = root.find(f".//{{{DS}}}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[5] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(etree.tostring(root), certificate=published)
    assert exc.value.code == "bad_signature"


def test_xml_refusals_have_codes(doc_signer, hsm_manager) -> None:
    published = hsm_manager.certificate("documents-ProviderMSP")
    signed = sign_xml(UBL, doc_signer)
    with pytest.raises(DocumentSignatureError) as exc:
        sign_xml(signed, doc_signer)
    assert exc.value.code == "already_signed"
    weak = signed.replace(b"xmldsig-more#ecdsa-sha256", b"xmldsig-more#ecdsa-sha1")
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(weak, certificate=published)
    assert exc.value.code == "unsupported_algorithm"
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(UBL, certificate=published)
    assert exc.value.code == "bad_xml_signature"
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(b"<Invoice", certificate=published)
    assert exc.value.code == "bad_xml"
    with pytest.raises(DocumentSignatureError) as exc:
        verify_xml(signed, certificate=hsm_manager.certificate("client-ProviderMSP"))
    assert exc.value.code == "bad_signature"


def test_xml_signature_verifies_with_an_independent_implementation(doc_signer, hsm_manager) -> None:
    import signxml  # a declared test dependency: missing, this fails rather than skips
    published = hsm_manager.certificate("documents-ProviderMSP")
    signed = sign_xml(UBL, doc_signer)
    pem = published.public_bytes(serialization.Encoding.PEM).decode()
    result = signxml.XMLVerifier().verify(signed, x509_cert=pem, expect_config=signxml.SignatureConfiguration(
        require_x509=True, expect_references=1))
    assert result.signed_xml is not None
    with pytest.raises(signxml.exceptions.InvalidSignature):
        signxml.XMLVerifier().verify(signed.replace(b">7354.20<", b">7354.29<"), x509_cert=pem)


def test_non_ubl_xml_gets_the_signature_as_last_child() -> None:
    from hub.keys.certs import create_ca

    signer = SoftwareSigner()
    signer.set_certificate(create_ca(signer, "TestMSP"))
    signed = sign_xml(b"<doc><a>1</a></doc>", signer)
    assert etree.fromstring(signed)[-1].tag == f"{{{DS}}}Signature"
    assert verify_xml(signed, certificate=signer.certificate())
