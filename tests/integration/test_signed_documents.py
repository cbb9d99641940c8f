"""Invoice documents delivered to ERPs carry the provider's signature made in the HSM (SoftHSM2): the UBL
e-invoice an enveloped XML signature, the JSON invoice a detached JWS. Anyone with the published
certificate verifies them; a changed byte fails; the signed UBL is still a valid EN 16931 document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from connectors.ubl_validation import UblValidator
from hub.config import Settings
from hub.keys import build_key_manager
from hub.keys.documents import DocumentSignatureError, verify_invoice_json, verify_xml
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import delivery_service, issue_invoices
from tests.helpers.erp import PARTIES

pytestmark = [pytest.mark.integration, pytest.mark.hsm]


def test_delivered_documents_are_signed_by_the_providers_hsm_key(
    pkcs11_settings: Settings,
    tmp_path: Path,
    shared_erp: Path,
) -> None:
    drop = tmp_path / "drop"
    settings = pkcs11_settings.updated(
        **{"parties": PARTIES, "connectors": {"ubl-drop": {"directory": str(drop)}}}
    )
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        (invoice_id,) = issue_invoices(
            ledger, 1, contract_id="ctr-signed", erp={"provider": "ubl-drop", "customer": "ubl-drop"}
        )
        svc = delivery_service(ledger, settings)
        svc.run_until_idle()
        svc.dispatcher.close()
        assert all(r["state"] == "delivered" for r in svc.list())
        invoice = json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": invoice_id})], as_org=PROVIDER))
    finally:
        ledger.close()

    manager = build_key_manager(settings)
    certificate = manager.certificate(f"documents-{PROVIDER}")
    assert manager.describe(f"documents-{PROVIDER}")["versions"][0]["key_id"]  # a key on the token

    xml = (drop / f"{invoice_id}.xml").read_bytes()
    assert verify_xml(xml, certificate=certificate)
    doc = etree.fromstring(xml)
    (payable,) = doc.xpath("//*[local-name()='PayableAmount']")
    payable.text = "0.01"
    tampered = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
    assert tampered != xml
    with pytest.raises(DocumentSignatureError):
        verify_xml(tampered, certificate=certificate)
    validator = UblValidator(shared_erp / "ubl-peppol" / "schematron" / "EN16931-UBL-validation.xslt")
    findings = validator.validate(xml)
    # a fatal-free EN 16931 document; its one finding is the advisory that it carries an extension: the
    # signature lives in UBLExtensions, where UBL puts signatures (ADR 0017)
    assert validator.fatal(xml) == []
    assert [(f.rule, f.flag) for f in findings] == [("UBL-CR-001", "warning")]

    jws = (drop / f"{invoice_id}.json.jws").read_text()
    stored = json.loads((drop / f"{invoice_id}.json").read_text())
    # the invoice as delivered (ISSUED; the ledger has moved on to POSTED since): same bill, signed
    assert {k: stored[k] for k in ("id", "lines", "subtotal", "tax", "total", "readings_digest")} == {
        k: invoice[k] for k in ("id", "lines", "subtotal", "tax", "total", "readings_digest")
    }
    assert verify_invoice_json(stored, jws, certificate=certificate)
    with pytest.raises(DocumentSignatureError):
        verify_invoice_json({**stored, "total": "0.01"}, jws, certificate=certificate)
