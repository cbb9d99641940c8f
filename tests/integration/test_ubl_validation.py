"""UBL documents against the UBL 2.1 schema and the official EN 16931 validation XSLT (run with Saxon).

The PEPPOL examples from ../shared/erp go through the same validator first, and mutated copies of one of
them must fail: that is what shows the validator can tell a good document from a bad one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from connectors.ubl_validation import UblValidator

pytestmark = pytest.mark.integration

EXAMPLES = [
    "base-example.xml",
    "Vat-category-S.xml",
    "Allowance-example.xml",
    "base-creditnote-correction.xml",
]
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


@pytest.mark.parametrize("name", EXAMPLES)
def test_peppol_examples_pass(validator: UblValidator, shared_erp: Path, name: str) -> None:
    xml = (shared_erp / "ubl-peppol" / "peppol-bis3-examples" / name).read_bytes()
    assert validator.fatal(xml) == []


def _mutate(xml: bytes, xpath: str, value: str) -> bytes:
    doc = etree.fromstring(xml)
    namespaces = {"cbc": CBC, "cac": CBC.replace("BasicComponents", "AggregateComponents")}
    (node,) = doc.xpath(xpath, namespaces=namespaces)
    node.text = value
    return etree.tostring(doc)


@pytest.mark.parametrize(
    ("xpath", "value", "rule"),
    [
        ("//cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "1.00", "BR-CO-15"),
        ("//cac:LegalMonetaryTotal/cbc:LineExtensionAmount", "999.99", "BR-CO-10"),
        ("/*/cbc:DocumentCurrencyCode", "XXX-NOT-A-CODE", "BR-CL-04"),
    ],
)
def test_validator_catches_broken_example(
    validator: UblValidator, shared_erp: Path, xpath: str, value: str, rule: str
) -> None:
    xml = (shared_erp / "ubl-peppol" / "peppol-bis3-examples" / "base-example.xml").read_bytes()
    rules = {f.rule for f in validator.fatal(_mutate(xml, xpath, value))}
    assert rule in rules, rules


def test_schema_violation_is_reported(validator: UblValidator, shared_erp: Path) -> None:
    xml = (shared_erp / "ubl-peppol" / "peppol-bis3-examples" / "base-example.xml").read_bytes()
    doc = etree.fromstring(xml)
    doc.insert(0, etree.Element(f"{{{CBC}}}NoSuchElement"))
    failures = validator.fatal(etree.tostring(doc))
    assert any(f.source == "xsd" for f in failures)
