"""UBL 2.1 invoices and credit notes conforming to PEPPOL BIS Billing 3.0 / EN 16931, and a drop connector
that writes them where an e-invoicing access point picks them up.

How ledger invoices map onto EN 16931 (the choices that are not obvious):

* Each charge line becomes one invoice line. A rated line has an amount but not always one unit price
  (a graduated charge prices units in several tiers), so the line's price is stated per base quantity:
  `PriceAmount` = line amount, `BaseQuantity` = invoiced quantity. Net = quantity × price / base quantity
  holds exactly, which is the rule EN 16931 states for line amounts.
* EN 16931 forbids negative item prices (BR-27), so the `maximum_cap` line becomes a document-level
  allowance (`AllowanceCharge` with `ChargeIndicator` false); totals are unchanged.
* One VAT breakdown for the plan's tax category and rate; a plan without tax is reported as exempt (E)
  with an exemption reason, since every EN 16931 invoice needs a VAT breakdown.
* Amounts are written with the currency's minor units (EUR 2, JPY 0), as the ledger rounded them.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from chaincode import creditor_ref
from chaincode.money import minor_units
from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    ErpRef,
    ErpStatus,
    InvoiceDocument,
    Party,
)
from connectors.vat import check_parties

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"

# UN/ECE Recommendation 20 unit codes for the units plans commonly use; anything else is "one" (C62).
UNIT_CODES = {
    "h": "HUR",
    "hour": "HUR",
    "hours": "HUR",
    "min": "MIN",
    "s": "SEC",
    "kwh": "KWH",
    "kw": "KWT",
    "mwh": "MWH",
    "gb": "E34",
    "tb": "E35",
    "mb": "4L",
    "kg": "KGM",
    "t": "TNE",
    "km": "KMT",
    "m": "MTR",
    "l": "LTR",
    "m3": "MTQ",
    "day": "DAY",
    "month": "MON",
}
DEFAULT_PAYMENT_DAYS = 30


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 JSON: the bytes the detached JWS of an invoice signs."""
    import rfc8785

    return rfc8785.dumps(dict(value))


def unit_code(unit: str | None) -> str:
    return UNIT_CODES.get((unit or "").strip().lower(), "C62")


class _Writer:
    """Small helper so the document reads top-down like the UBL it produces."""

    def __init__(self, root_ns: str, root_name: str) -> None:
        self.root = etree.Element(
            f"{{{root_ns}}}{root_name}", nsmap={None: root_ns, "cac": NS_CAC, "cbc": NS_CBC}
        )

    @staticmethod
    def cbc(parent: etree._Element, name: str, text: str, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{NS_CBC}}}{name}", attrs)
        el.text = text
        return el

    @staticmethod
    def cac(parent: etree._Element, name: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{NS_CAC}}}{name}")


def _money(value: Any, currency: str) -> str:
    """Amounts arrive as decimal strings already rounded by the ledger; keep their exact digits."""
    amount = Decimal(str(value))
    exponent = minor_units(currency)  # the ledger's own ISO 4217 table: one source of truth
    return str(amount.quantize(Decimal(1).scaleb(-exponent)))


def _quantity(value: Any) -> str:
    q = Decimal(str(value))
    return format(q, "f")


def _period_dates(period: str) -> tuple[dt.date, dt.date]:
    year, month = (int(x) for x in period.split("-"))
    start = dt.date(year, month, 1)
    nxt = dt.date(year + (month // 12), month % 12 + 1, 1)
    return start, nxt - dt.timedelta(days=1)


def _issue_date(invoice: Mapping[str, Any], contract: Mapping[str, Any]) -> dt.date:
    tz = ZoneInfo(str(contract.get("timezone") or "UTC"))
    issued = invoice.get("issued_at")
    if issued:
        return dt.datetime.fromisoformat(str(issued).replace("Z", "+00:00")).astimezone(tz).date()
    # an invoice not yet stamped is dated the day after its period ends
    return _period_dates(str(invoice["period"]))[1] + dt.timedelta(days=1)


def _party(w: _Writer, parent: etree._Element, party: Party, *, role: str, vat: bool = True) -> None:
    p = w.cac(w.cac(parent, role), "Party")
    endpoint = party.erp_ids.get("peppol_endpoint")
    if endpoint and ":" in endpoint:
        scheme, ident = endpoint.split(":", 1)
        w.cbc(p, "EndpointID", ident, schemeID=scheme)
    elif party.email:
        w.cbc(p, "EndpointID", party.email, schemeID="EM")
    w.cbc(w.cac(p, "PartyName"), "Name", party.name)
    address = w.cac(p, "PostalAddress")
    if party.street:
        w.cbc(address, "StreetName", party.street)
    if party.city:
        w.cbc(address, "CityName", party.city)
    if party.postal_code:
        w.cbc(address, "PostalZone", party.postal_code)
    w.cbc(w.cac(address, "Country"), "IdentificationCode", party.country)
    if party.vat_id and vat:
        scheme = w.cac(p, "PartyTaxScheme")
        w.cbc(scheme, "CompanyID", party.vat_id)
        w.cbc(w.cac(scheme, "TaxScheme"), "ID", "VAT")
    legal = w.cac(p, "PartyLegalEntity")
    w.cbc(legal, "RegistrationName", party.name)
    if party.erp_ids.get("legal_id"):  # e.g. the commercial register number (BT-30)
        w.cbc(legal, "CompanyID", party.erp_ids["legal_id"])


# VAT categories that carry no VAT: the VAT breakdown states why (BR-E-10, BR-AE-10, BR-IC-10, BR-G-10,
# BR-O-10), as a VATEX code and its text; only there (PEPPOL warns about reasons on lines, UBL-CR-601).
EXEMPTION_REASONS = {
    "E": (None, "Exempt from VAT"),
    "AE": ("VATEX-EU-AE", "Reverse charge"),
    "K": ("VATEX-EU-IC", "Intra-community supply"),
    "G": ("VATEX-EU-G", "Export outside the EU"),
    "O": ("VATEX-EU-O", "Not subject to VAT"),
}


def _tax_category(
    w: _Writer, parent: etree._Element, name: str, category: str, rate: Decimal, *, breakdown: bool = False
) -> None:
    cat = w.cac(parent, name)
    w.cbc(cat, "ID", category)
    if category != "O":  # "not subject to VAT" has no rate at all (BR-O-05, BR-O-06, BR-O-09)
        w.cbc(cat, "Percent", format((rate * 100).normalize(), "f"))
    if breakdown and category in EXEMPTION_REASONS:
        code, text = EXEMPTION_REASONS[category]
        if code:
            w.cbc(cat, "TaxExemptionReasonCode", code)
        w.cbc(cat, "TaxExemptionReason", text)
    w.cbc(w.cac(cat, "TaxScheme"), "ID", "VAT")


def _tax_terms(contract: Mapping[str, Any]) -> tuple[str, Decimal]:
    tax = contract.get("tax")
    if not tax:
        return "E", Decimal(0)
    return str(tax.get("category") or "S"), Decimal(str(tax.get("rate", "0")))


# EN 16931 rules that need party master data the ledger does not hold (it comes from settings.parties):
# the seller's VAT identifier for every category but "not subject to VAT" (BR-S-02, BR-Z-02, BR-E-02,
# BR-AE-02, BR-IC-02, BR-G-02, BR-AF-02, BR-AG-02; also BR-CO-26), the buyer's for reverse charge and
# intra-community supply (BR-AE-02, BR-IC-02). A seller shown without VAT id ("not subject to VAT" may show
# none, BR-O-02; split payment need not) is identified by its legal registration id, `erp_ids.legal_id`
# (BR-CO-26). Split payment is Italian domestic (BR-B-01).
SELLER_VAT_CATEGORIES = frozenset({"S", "Z", "E", "AE", "K", "G", "L", "M"})
BUYER_VAT_CATEGORIES = frozenset({"AE", "K"})


class MasterDataMissing(ConnectorConfigError):
    """The parties' master data cannot make a valid EN 16931 document: the e-invoice is not produced (a
    document a receiver's validator refuses would be worse than none). `gaps` names each missing field."""

    code = "party_data_incomplete"

    def __init__(self, gaps: list[str]) -> None:
        super().__init__("e-invoice master data missing: " + "; ".join(gaps))
        self.gaps = gaps


def master_data_gaps(document: InvoiceDocument) -> list[str]:
    """What `settings.parties` must add before this document can pass EN 16931 (empty when nothing)."""
    category, _rate = _tax_terms(document.contract)
    gaps = []
    seller = document.seller
    if category in SELLER_VAT_CATEGORIES and not seller.vat_id:
        gaps.append(f"parties.{seller.org}.vat_id (seller VAT identifier, VAT category {category})")
    elif not (seller.vat_id and category != "O") and not seller.erp_ids.get("legal_id"):
        # the seller must be identified somehow (BR-CO-26); category O may not show a VAT id (BR-O-02)
        gaps.append(f"parties.{seller.org}.erp_ids.legal_id (seller legal registration id, VAT category "
                    f"{category}, no VAT id shown)")
    if category in BUYER_VAT_CATEGORIES and not document.buyer.vat_id:
        gaps.append(f"parties.{document.buyer.org}.vat_id (buyer VAT identifier, VAT category {category})")
    if category == "B":  # split payment exists only between Italian parties (BR-B-01)
        gaps += [f"parties.{party.org}.country IT (split payment, VAT category B), not {party.country}"
                 for party in (document.seller, document.buyer) if party.country != "IT"]
    return gaps


def build_ubl(document: InvoiceDocument, *, check_master_data: bool = True) -> bytes:
    """The UBL XML for a ledger invoice or credit note (UTF-8, with XML declaration). Raises
    `PartyDataInvalid` when a VAT id fails its check digits (connectors.vat), `MasterDataMissing` when the
    parties' data cannot make it valid (`check_master_data=False` builds it
    anyway: only for showing what a validator would say)."""
    if check_master_data:
        check_parties([(document.seller.org, document.seller), (document.buyer.org, document.buyer)])
        if gaps := master_data_gaps(document):
            raise MasterDataMissing(gaps)
    invoice, contract = document.invoice, document.contract
    credit = document.is_credit_note
    currency = str(invoice["currency"])
    w = _Writer(NS_CREDIT_NOTE if credit else NS_INVOICE, "CreditNote" if credit else "Invoice")
    root = w.root
    w.cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    w.cbc(root, "ProfileID", PROFILE_ID)
    w.cbc(root, "ID", str(invoice["id"]))
    issue = _issue_date(invoice, contract)
    w.cbc(root, "IssueDate", issue.isoformat())
    if not credit:
        due = issue + dt.timedelta(days=int(contract.get("payment_terms_days") or DEFAULT_PAYMENT_DAYS))
        w.cbc(root, "DueDate", due.isoformat())
        w.cbc(root, "InvoiceTypeCode", "380")
    else:
        w.cbc(root, "CreditNoteTypeCode", "381")
    w.cbc(
        root,
        "Note",
        f"Usage of contract {contract.get('id', invoice.get('contract_id'))}, "
        f"period {invoice['period']}; readings digest {invoice.get('readings_digest', '-')}",
    )
    w.cbc(root, "DocumentCurrencyCode", currency)
    w.cbc(root, "BuyerReference", str(invoice.get("contract_id") or contract.get("id")))
    start, end = _period_dates(str(invoice["period"]))
    period = w.cac(root, "InvoicePeriod")
    w.cbc(period, "StartDate", start.isoformat())
    w.cbc(period, "EndDate", end.isoformat())
    if credit and invoice.get("credit_for"):
        ref = w.cac(w.cac(root, "BillingReference"), "InvoiceDocumentReference")
        w.cbc(ref, "ID", str(invoice["credit_for"]))
    category, rate = _tax_terms(contract)
    vat_ids = category != "O"  # "not subject to VAT" names no VAT identifier of either party (BR-O-02)
    _party(w, root, document.seller, role="AccountingSupplierParty", vat=vat_ids)
    _party(w, root, document.buyer, role="AccountingCustomerParty", vat=vat_ids)
    if category == "K":  # an intra-community supply states where it went (BR-IC-12)
        place = w.cac(w.cac(w.cac(root, "Delivery"), "DeliveryLocation"), "Address")
        w.cbc(w.cac(place, "Country"), "IdentificationCode", document.buyer.country)
    if not credit:
        # BT-83 remittance information: the invoice's ISO 11649 creditor reference, which the payer quotes
        # and the bank statement returns (hub/bank matches on it). Without the seller's IBAN the means
        # are "1" (not defined): a SEPA credit transfer (58) must name the account (BR-61).
        iban = document.seller.erp_ids.get("iban")
        means = w.cac(root, "PaymentMeans")
        w.cbc(means, "PaymentMeansCode", "58" if iban else "1")
        w.cbc(means, "PaymentID", creditor_ref.for_invoice(str(invoice["id"])))
        if iban:
            w.cbc(w.cac(means, "PayeeFinancialAccount"), "ID", iban)

    lines = [ln for ln in invoice["lines"] if ln.get("charge_id") != "maximum_cap"]
    allowance = sum(
        (-Decimal(str(ln["amount"])) for ln in invoice["lines"] if ln.get("charge_id") == "maximum_cap"),
        Decimal(0),
    )
    if allowance:
        ac = w.cac(root, "AllowanceCharge")
        w.cbc(ac, "ChargeIndicator", "false")
        w.cbc(ac, "AllowanceChargeReason", "Maximum charge for the period (cap)")
        w.cbc(ac, "Amount", _money(allowance, currency), currencyID=currency)
        _tax_category(w, ac, "TaxCategory", category, rate)

    line_total = sum((Decimal(str(ln["amount"])) for ln in lines), Decimal(0))
    subtotal = Decimal(str(invoice["subtotal"]))
    tax = Decimal(str(invoice["tax"]))
    total = Decimal(str(invoice["total"]))
    tax_total = w.cac(root, "TaxTotal")
    w.cbc(tax_total, "TaxAmount", _money(tax, currency), currencyID=currency)
    sub = w.cac(tax_total, "TaxSubtotal")
    w.cbc(sub, "TaxableAmount", _money(subtotal, currency), currencyID=currency)
    w.cbc(sub, "TaxAmount", _money(tax, currency), currencyID=currency)
    _tax_category(w, sub, "TaxCategory", category, rate, breakdown=True)

    totals = w.cac(root, "LegalMonetaryTotal")
    w.cbc(totals, "LineExtensionAmount", _money(line_total, currency), currencyID=currency)
    w.cbc(totals, "TaxExclusiveAmount", _money(subtotal, currency), currencyID=currency)
    w.cbc(totals, "TaxInclusiveAmount", _money(total, currency), currencyID=currency)
    if allowance:
        w.cbc(totals, "AllowanceTotalAmount", _money(allowance, currency), currencyID=currency)
    w.cbc(totals, "PayableAmount", _money(total, currency), currencyID=currency)

    metrics = contract.get("metrics") or {}
    for number, ln in enumerate(lines, start=1):
        _line(w, root, number, ln, metrics, currency, category, rate, credit)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _line(
    w: _Writer,
    root: etree._Element,
    number: int,
    ln: Mapping[str, Any],
    metrics: Mapping[str, Any],
    currency: str,
    category: str,
    rate: Decimal,
    credit: bool,
) -> None:
    el = w.cac(root, "CreditNoteLine" if credit else "InvoiceLine")
    w.cbc(el, "ID", str(number))
    metric = ln.get("metric")
    unit = unit_code((metrics.get(metric) or {}).get("unit") if metric else None)
    quantity = Decimal(str(ln.get("quantity") or "1"))
    amount = Decimal(str(ln["amount"]))
    w.cbc(el, "CreditedQuantity" if credit else "InvoicedQuantity", _quantity(quantity), unitCode=unit)
    w.cbc(el, "LineExtensionAmount", _money(amount, currency), currencyID=currency)
    item = w.cac(el, "Item")
    name = str(ln.get("description") or ln["charge_id"])
    if metric:
        w.cbc(item, "Description", f"{ln.get('model')} charge on {metric}")
    w.cbc(item, "Name", name)
    w.cbc(w.cac(item, "SellersItemIdentification"), "ID", str(ln["charge_id"]))
    _tax_category(w, item, "ClassifiedTaxCategory", category, rate)
    price = w.cac(el, "Price")
    if quantity > 0:
        # the line amount per invoiced quantity: exact for every charge model (see module docstring)
        w.cbc(price, "PriceAmount", _money(abs(amount), currency), currencyID=currency)
        w.cbc(price, "BaseQuantity", _quantity(quantity), unitCode=unit)
    else:
        w.cbc(price, "PriceAmount", _money(0, currency), currencyID=currency)


# --- the drop connector --------------------------------------------------------------------------


class UblDropConnector:
    """Writes each document as `<outbox>/<invoice id>.xml` for an e-invoicing access point to pick up,
    the way SFTP drops work: written under a temporary name, then renamed, so a reader never sees half a
    file. The access point moves what it took to `<outbox>/sent/` (or reports failures in `failed/`);
    `lookup` looks in all three places, so a redelivery after a crash does not send twice.

    Settings: `directory` (required).
    """

    name = "ubl-drop"

    def __init__(self, config: ConnectorConfig) -> None:
        directory = config.settings.get("directory")
        if not directory:
            raise ConnectorConfigError("ubl-drop needs settings.directory")
        self.target = config.target
        self.directory = Path(directory)
        for sub in ("", "sent", "failed"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, invoice_id: str, where: str = "") -> Path:
        if "/" in invoice_id or invoice_id.startswith("."):
            raise BusinessRejection(f"invoice id {invoice_id!r} is not a safe file name")
        return self.directory / where / f"{invoice_id}.xml"

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        existing = self.lookup(document, delivery)
        if existing is not None:
            return existing
        xml = build_ubl(document)
        if document.sign_xml is not None:
            xml = document.sign_xml(xml)  # enveloped signature by the provider's document key
        if document.signature:
            # the JSON invoice travels beside the e-invoice with its detached JWS, for receivers that want it
            base = self._path(document.invoice_id)
            self._write(base.with_suffix(".json"), canonical_json(document.invoice))
            self._write(base.with_suffix(".json.jws"), document.signature["jws"].encode())
        final = self._path(document.invoice_id)
        self._write(final, xml)  # last: its presence is what `lookup` takes as delivered
        return ErpRef(
            system=self.name,
            document_id=document.invoice_id,
            target=self.target,
            details={"path": str(final)},
        )

    def _write(self, final: Path, data: bytes) -> None:
        """Write under a temporary name, then rename: a reader never sees half a file."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".partial-", suffix=final.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        for where in ("", "sent"):
            path = self._path(document.invoice_id, where)
            if path.exists():
                return ErpRef(
                    system=self.name,
                    document_id=document.invoice_id,
                    target=self.target,
                    details={"path": str(path)},
                )
        failed = self._path(document.invoice_id, "failed")
        if failed.exists():
            raise BusinessRejection(
                f"access point refused {document.invoice_id}",
                erp_messages=[
                    failed.with_suffix(".reason").read_text()
                    if failed.with_suffix(".reason").exists()
                    else "failed"
                ],
            )
        return None

    def status(self, ref: ErpRef) -> ErpStatus:
        # An e-invoice drop carries no payment information: payment is reconciled through the ERPs.
        return ErpStatus(state="open", amount=Decimal(0), paid_amount=Decimal(0), currency="")

    def close(self) -> None:
        return None
