"""Every UBL document the project produces passes the UBL 2.1 schema and the EN 16931 XSLT with zero
failed assertions. The invoices are issued by the real contract on an in-memory stub, so what is
validated is what the ledger really issues: every charge model, a minimum-commitment true-up, a cap,
tax, JPY amounts, and a credit note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from connectors.base import InvoiceDocument, Party
from connectors.ubl import MasterDataMissing, build_ubl, master_data_gaps
from connectors.ubl_validation import UblValidator
from tests.helpers.chaincode import (
    CUSTOMER,
    NOV_END,
    PROVIDER,
    ChaincodeLedger,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.integration

SELLER = Party(
    org=PROVIDER,
    name="MedLease GmbH",
    country="DE",
    vat_id="DE123456788",
    street="Invalidenstr. 1",
    city="Berlin",
    postal_code="10115",
    email="ar@medlease.example",
    erp_ids={"iban": "DE89370400440532013000"},
)
BUYER = Party(
    org=CUSTOMER,
    name="Klinikum Mitte",
    country="DE",
    vat_id="DE987654328",
    street="Chariteplatz 1",
    city="Berlin",
    postal_code="10117",
    email="ap@klinikum.example",
)

ALL_MODELS_METRICS = {
    "scan": {"aggregation": "sum", "unit": "scan"},
    "magnet_hours": {"aggregation": "sum", "unit": "h"},
    "peak_kw": {"aggregation": "max", "unit": "kW"},
    "energy": {"aggregation": "sum", "unit": "kWh"},
    "storage": {"aggregation": "latest", "unit": "GB"},
}
ALL_MODELS_CHARGES = [
    {"id": "platform", "model": "flat", "amount": "500.00"},
    {
        "id": "scans",
        "model": "graduated",
        "metric": "scan",
        "tiers": [{"up_to": "2", "unit_price": "85.00"}, {"up_to": None, "unit_price": "70.00"}],
    },
    {"id": "hours", "model": "per_unit", "metric": "magnet_hours", "unit_price": "12.50"},
    {
        "id": "peak",
        "model": "volume",
        "metric": "peak_kw",
        "tiers": [{"up_to": "10", "unit_price": "3.10"}, {"up_to": None, "unit_price": "2.75"}],
    },
    {
        "id": "storage",
        "model": "package",
        "metric": "storage",
        "package_size": "100",
        "package_price": "9.99",
    },
    {
        "id": "surge",
        "model": "time_of_use",
        "metric": "magnet_hours",
        "default_unit_price": "4.00",
        "windows": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from": "08:00",
                "to": "18:00",
                "unit_price": "9.50",
            }
        ],
    },
    {"id": "spot", "model": "dynamic", "metric": "energy"},
]


def _issue(contract: dict[str, Any], readings: list[dict[str, Any]], *, credit: bool = False) -> list[dict]:
    """Run the contract through asset, propose, accept, usage and close; return the documents issued."""
    ledger = ChaincodeLedger()
    key = make_device_key("ubl")
    ledger.submit("RegisterAsset", sample_asset(key), org=PROVIDER)
    ledger.submit("ProposeContract", contract, org=PROVIDER)
    ledger.submit("AcceptContract", {"contract_id": contract["id"]}, org=CUSTOMER)
    if readings:
        result = ledger.submit(
            "RecordUsage",
            {"messages": [signed_message(key, readings)]},
            org=PROVIDER,
            at=NOV_END - dt.timedelta(hours=1),
        )
        assert result["results"][0]["status"] == "accepted", result
    invoice = ledger.submit(
        "CloseBillingPeriod",
        {"contract_id": contract["id"], "period": "2026-11"},
        org=PROVIDER,
        at=NOV_END + dt.timedelta(hours=2),
    )
    docs = [invoice]
    if credit:
        ledger.submit("Dispute", {"invoice_id": invoice["id"], "reason": "scan count"}, org=CUSTOMER)
        ledger.submit("IssueCreditNote", {"invoice_id": invoice["id"], "reason": "agreed"}, org=PROVIDER)
        stored = ledger.evaluate("ListInvoices", {"contract_id": contract["id"]})
        items = stored["invoices"] if isinstance(stored, dict) else stored
        docs += [d for d in items if d.get("type") == "credit_note"]
    return docs


def _validate(validator: UblValidator, invoice: dict, contract: dict) -> bytes:
    xml = build_ubl(InvoiceDocument(invoice=invoice, contract=contract, seller=SELLER, buyer=BUYER))
    failures = validator.validate(xml)
    assert [str(f) for f in failures] == []
    return xml


def _total(xml: bytes) -> Decimal:
    doc = etree.fromstring(xml)
    (payable,) = doc.xpath("//*[local-name()='PayableAmount']")
    return Decimal(payable.text)


def test_every_charge_model_with_tax(validator: UblValidator, shared_erp: Path) -> None:
    contract = sample_contract(
        metrics=ALL_MODELS_METRICS, charges=ALL_MODELS_CHARGES, minimum_commitment=None
    )
    readings = [
        reading("r1", "scan", "1", "2026-11-03T09:15:00+01:00"),
        reading("r2", "scan", "3", "2026-11-04T09:15:00+01:00"),
        reading("r3", "magnet_hours", "0.75", "2026-11-03T09:59:00+01:00"),  # Tuesday, peak window
        reading("r4", "magnet_hours", "2.5", "2026-11-07T22:00:00+01:00"),  # Saturday, default price
        reading("r5", "peak_kw", "12.4", "2026-11-05T10:00:00+01:00"),
        reading("r6", "energy", "30.5", "2026-11-05T11:00:00+01:00", unit_price="0.2137"),
        reading("r7", "storage", "250", "2026-11-20T11:00:00+01:00"),
    ]
    (invoice,) = _issue(contract, readings)
    assert {ln["model"] for ln in invoice["lines"]} >= {
        "flat",
        "graduated",
        "per_unit",
        "volume",
        "package",
        "time_of_use",
        "dynamic",
    }
    xml = _validate(validator, invoice, contract)
    assert _total(xml) == Decimal(invoice["total"])
    # the same validator instance, in the same test, passes PEPPOL's own examples and fails a broken one:
    # it is not a validator that passes everything
    examples = sorted((shared_erp / "ubl-peppol" / "peppol-bis3-examples").glob("*.xml"))
    assert len(examples) >= 4
    for example in examples:
        assert [str(f) for f in validator.validate(example.read_bytes())] == [], example.name
    currency = b"<cbc:DocumentCurrencyCode>"
    broken = examples[0].read_bytes().replace(currency, currency + b"X", 1)
    assert any(f.flag == "fatal" for f in validator.validate(broken))


def test_minimum_commitment_true_up(validator: UblValidator) -> None:
    contract = sample_contract()  # minimum commitment 2000.00, little usage
    (invoice,) = _issue(contract, [reading("r1", "scan", "2")])
    assert any(ln["charge_id"] == "minimum_commitment_true_up" for ln in invoice["lines"])
    _validate(validator, invoice, contract)


def test_maximum_cap_becomes_an_allowance(validator: UblValidator) -> None:
    contract = sample_contract(maximum="300.00", minimum_commitment=None)
    (invoice,) = _issue(contract, [reading("r1", "scan", "5")])
    assert any(ln["charge_id"] == "maximum_cap" for ln in invoice["lines"])
    xml = _validate(validator, invoice, contract)
    assert b"AllowanceTotalAmount" in xml
    assert _total(xml) == Decimal(invoice["total"])


def test_jpy_amounts_have_no_minor_units(validator: UblValidator) -> None:
    charges = [
        {"id": "platform", "model": "flat", "amount": "50000"},
        {"id": "scans", "model": "per_unit", "metric": "scan", "unit_price": "1234.5"},
    ]
    contract = sample_contract(
        currency="JPY",
        timezone="Asia/Tokyo",
        charges=charges,
        minimum_commitment=None,
        tax={"rate": "0.10", "category": "S"},
    )
    (invoice,) = _issue(contract, [reading("r1", "scan", "3", "2026-11-03T09:15:00+09:00")])
    xml = _validate(validator, invoice, contract)
    amounts = etree.fromstring(xml).xpath("//*[@currencyID='JPY']")
    assert amounts and all("." not in a.text for a in amounts)


def test_credit_note(validator: UblValidator) -> None:
    contract = sample_contract()
    docs = _issue(contract, [reading("r1", "scan", "30")], credit=True)
    invoice, credit_notes = docs[0], docs[1:]
    assert len(credit_notes) == 1
    xml = _validate(validator, credit_notes[0], contract)
    assert etree.QName(etree.fromstring(xml)).localname == "CreditNote"
    assert invoice["id"].encode() in xml  # the billing reference names the credited invoice


# --- every VAT category the plan accepts, and the master data each needs ---------------------------------

CATEGORY_RATES = {"S": "0.19", "Z": "0", "E": "0", "AE": "0", "K": "0", "G": "0", "O": "0", "L": "0.07",
                  "M": "0.04", "B": "0.22"}
LEGAL = {**SELLER.erp_ids, "legal_id": "HRB 123456 B"}
ITALIAN = {"country": "IT", "vat_id": "IT12345670017", "city": "Roma", "postal_code": "00184"}


def _parties(category: str) -> tuple[Party, Party]:
    seller, buyer = dataclasses.replace(SELLER, erp_ids=LEGAL), BUYER
    if category == "B":  # split payment is Italian domestic (BR-B-01)
        seller = dataclasses.replace(seller, **ITALIAN)
        buyer = dataclasses.replace(buyer, **{**ITALIAN, "vat_id": "IT10987650032"})
    return seller, buyer


def test_plan_categories_are_the_ones_covered_here() -> None:
    from chaincode.plan import TAX_CATEGORIES

    assert set(CATEGORY_RATES) == set(TAX_CATEGORIES)


@pytest.mark.parametrize("category", sorted(CATEGORY_RATES))
def test_every_vat_category_and_the_master_data_it_needs(validator: UblValidator, category: str) -> None:
    """Complete master data gives zero failed assertions (warnings included) for every VAT category; each
    piece of master data removed makes `build_ubl` refuse, naming it, exactly when the official validator
    would have failed the document (built anyway, unchecked, to ask it)."""
    contract = sample_contract(id=f"ctr-vat-{category.lower()}", tax={"category": category,
                                                                      "rate": CATEGORY_RATES[category]})
    (invoice,) = _issue(contract, [reading("r1", "scan", "3")])
    seller, buyer = _parties(category)
    variants = {
        "complete": (seller, buyer),
        "seller without VAT id": (dataclasses.replace(seller, vat_id=None), buyer),
        "buyer without VAT id": (seller, dataclasses.replace(buyer, vat_id=None)),
        "seller without legal id": (dataclasses.replace(seller, erp_ids=SELLER.erp_ids), buyer),
        "foreign buyer": (seller, dataclasses.replace(buyer, country="FR", vat_id="FR40303265045")),
    }
    for label, (s, b) in variants.items():
        document = InvoiceDocument(invoice=invoice, contract=contract, seller=s, buyer=b)
        fatal = [f for f in validator.validate(build_ubl(document, check_master_data=False))
                 if f.flag != "warning"]
        gaps = master_data_gaps(document)
        assert bool(gaps) == bool(fatal), (label, gaps, [str(f) for f in fatal])
        if gaps:
            with pytest.raises(MasterDataMissing) as refused:
                build_ubl(document)
            assert refused.value.gaps == gaps and refused.value.code == "party_data_incomplete"
        else:
            assert [str(f) for f in validator.validate(build_ubl(document))] == [], label


def test_the_api_serves_valid_ubl_and_refuses_it_without_master_data(
    validator: UblValidator, tmp_path: Path
) -> None:
    from tests.helpers.api import (
        MASTER_DATA,
        auth,
        embedded_ledger,
        hub_client,
        hub_settings,
        last_month,
        post_usage,
        setup_contract,
        ts,
        usage,
    )

    period, _ = last_month()
    key = make_device_key("ubl-api")
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        with hub_client(hub_settings(tmp_path), ledger) as client:
            contract = setup_contract(client, key)
            sent = post_usage(client, usage(key, "m-1", [reading("r-1", "scan", "4", ts(period, 5))]))
            assert sent.status_code == 202, sent.text
            closed = client.post(f"/v1/contracts/{contract['id']}/periods/{period}/close",
                                 headers=auth("tok-operator"))
            assert closed.status_code == 200, closed.text
            invoice_id = closed.json()["id"]
            served = client.get(f"/v1/invoices/{invoice_id}/ubl", headers=auth("tok-customer"))
            assert served.status_code == 200
            assert [str(f) for f in validator.validate(served.content)] == []
            # the invoice the API serves names the same ISO 11649 reference as the e-invoice's BT-83
            shown = client.get(f"/v1/invoices/{invoice_id}", headers=auth("tok-customer")).json()
            (payment_id,) = etree.fromstring(served.content).xpath("//*[local-name()='PaymentID']/text()")
            assert shown["payment_reference"] == payment_id and payment_id.startswith("RF")
        # the same ledger, served by a hub whose provider master data lacks the VAT id
        parties = {**MASTER_DATA, PROVIDER: {"name": "MedLease GmbH", "country": "DE"}}
        with hub_client(hub_settings(tmp_path / "second", parties=parties), ledger) as client:
            refused = client.get(f"/v1/invoices/{invoice_id}/ubl", headers=auth("tok-customer"))
            assert refused.status_code == 409
            assert refused.headers["content-type"].startswith("application/problem+json")
            body = refused.json()
            assert body["code"] == "party_data_incomplete"
            assert body["missing"] == [f"parties.{PROVIDER}.vat_id (seller VAT identifier, VAT category S)"]
    finally:
        ledger.close()


def test_payment_means_carry_the_invoice_creditor_reference(validator: UblValidator) -> None:
    """BT-83 (cac:PaymentMeans/cbc:PaymentID) is the invoice's ISO 11649 reference, in the schema's order
    (PaymentMeansCode, PaymentID, PayeeFinancialAccount), and the document still passes EN 16931."""
    from chaincode import creditor_ref

    contract = sample_contract()
    (invoice,) = _issue(contract, [reading("r1", "scan", "2")])
    xml = _validate(validator, invoice, contract)
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    (means,) = etree.fromstring(xml).xpath("/*/cac:PaymentMeans", namespaces=ns)
    assert [etree.QName(child).localname for child in means] == [
        "PaymentMeansCode", "PaymentID", "PayeeFinancialAccount"]
    payment_id = means.findtext("cbc:PaymentID", namespaces=ns)
    assert payment_id == creditor_ref.for_invoice(invoice["id"])
    assert creditor_ref.is_valid(payment_id) and payment_id.startswith("RF")
    # a wrong reference in the same place is still schema-valid: the check digits are ours to guard
    assert not creditor_ref.is_valid(payment_id[:-1] + ("0" if payment_id[-1] != "0" else "1"))
    # the validator does read the payment means: a credit transfer without the account fails BR-61
    doc = etree.fromstring(xml)
    (account,) = doc.xpath("/*/cac:PaymentMeans/cac:PayeeFinancialAccount", namespaces=ns)
    account.getparent().remove(account)
    assert "BR-61" in {f.rule for f in validator.validate(etree.tostring(doc))}
    # without the seller's IBAN the means are "not defined" (1) and still carry the reference, valid
    no_iban = dataclasses.replace(SELLER, erp_ids={})
    xml = build_ubl(InvoiceDocument(invoice=invoice, contract=contract, seller=no_iban, buyer=BUYER))
    assert [str(f) for f in validator.validate(xml)] == []
    (means,) = etree.fromstring(xml).xpath("/*/cac:PaymentMeans", namespaces=ns)
    assert [(etree.QName(c).localname, c.text) for c in means] == [
        ("PaymentMeansCode", "1"), ("PaymentID", payment_id)]
