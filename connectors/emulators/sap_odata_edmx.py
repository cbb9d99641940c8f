"""What the SAP OData emulator knows of SAP's service definitions: the entity types read from the real EDMX
files (or a small built-in list without them), the property checks SAP Gateway applies on create, SAP's
error body, and the `$filter` subset the connector sends. Split from `sap_odata` (the server) to keep
both readable.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

SHARED_SAP_ODATA = Path(__file__).resolve().parents[2].parent / "shared" / "erp" / "sap-odata"
SERVICES = {
    "API_SUPPLIERINVOICE_PROCESS_SRV": ("A_SupplierInvoice", "A_SupplierInvoiceType"),
    "API_BILLING_DOCUMENT_SRV": ("A_BillingDocument", "A_BillingDocumentType"),
    "API_JOURNALENTRYITEMBASIC_SRV": ("A_JournalEntryItemBasic", "A_JournalEntryItemBasicType"),
}
CHILD_TYPES = {
    "to_SupplierInvoiceItemGLAcct": "A_SupplierInvoiceItemGLAcctType",
    "to_SupplierInvoiceTax": "A_SupplierInvoiceTaxType",
}
EDM = "http://schemas.microsoft.com/ado/2008/09/edm"
SAP = "http://www.sap.com/Protocols/SAPData"
DATE = re.compile(r"^/Date\(-?\d+\)/$")
REQUIRED_HEADER = (
    "CompanyCode",
    "DocumentDate",
    "PostingDate",
    "InvoicingParty",
    "DocumentCurrency",
    "InvoiceGrossAmount",
    "SupplierInvoiceIDByInvcgParty",
)
FALLBACK = {
    "A_SupplierInvoiceType": {
        name: ("Edm.String", None, None, True)
        for name in (
            *REQUIRED_HEADER,
            "DocumentHeaderText",
            "SupplierPostingLineItemText",
            "TaxIsCalculatedAutomatically",
            "SupplierInvoiceIsCreditMemo",
        )
    },
    "A_SupplierInvoiceItemGLAcctType": {
        name: ("Edm.String", None, None, True)
        for name in (
            "SupplierInvoiceItem",
            "CompanyCode",
            "GLAccount",
            "DocumentCurrency",
            "SupplierInvoiceItemAmount",
            "DebitCreditCode",
            "TaxCode",
            "SupplierInvoiceItemText",
        )
    },
    "A_SupplierInvoiceTaxType": {
        name: ("Edm.String", None, None, True)
        for name in ("TaxCode", "DocumentCurrency", "TaxAmount", "TaxBaseAmountInTransCrcy")
    },
}
Prop = tuple[str, int | None, int | None, bool]  # type, max length or precision, scale, creatable


class SapError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": {"lang": "en", "value": self.message},
                "innererror": {
                    "errordetails": [{"code": self.code, "message": self.message, "severity": "error"}]
                },
            }
        }


def load_metadata(directory: Path | None) -> tuple[dict[str, dict[str, Prop]], dict[str, bytes]]:
    """Entity type properties from the real EDMX files, and the files themselves for `$metadata`."""
    types: dict[str, dict[str, Prop]] = {}
    documents: dict[str, bytes] = {}
    if directory is None or not directory.is_dir():
        return types, documents
    for service in SERVICES:
        path = directory / f"{service}.edmx"
        if not path.exists():
            continue
        documents[service] = path.read_bytes()
        tree = etree.fromstring(documents[service], etree.XMLParser(resolve_entities=False, no_network=True))
        for entity in tree.iter(f"{{{EDM}}}EntityType"):
            props: dict[str, Prop] = {}
            for p in entity.iter(f"{{{EDM}}}Property"):
                size = p.get("MaxLength") or p.get("Precision")
                props[p.get("Name")] = (
                    p.get("Type"),
                    int(size) if size else None,
                    int(p.get("Scale")) if p.get("Scale") else None,
                    p.get(f"{{{SAP}}}creatable") != "false",
                )
            types[entity.get("Name")] = props
    return types, documents


def check_properties(type_name: str, values: dict[str, Any], types: dict[str, dict[str, Prop]]) -> None:
    props = types.get(type_name) or FALLBACK.get(type_name, {})
    for name, value in values.items():
        if name in CHILD_TYPES:
            continue
        if name not in props:
            raise SapError(400, "/IWBEP/CM_MGW_RT/020", f"Property '{name}' is invalid for {type_name}")
        edm, size, scale, creatable = props[name]
        if not creatable:
            raise SapError(400, "/IWBEP/CM_MGW_RT/021", f"Property '{name}' cannot be set on create")
        if value is None:
            continue
        if edm == "Edm.String":
            if not isinstance(value, str) or (size is not None and len(value) > size):
                raise SapError(400, "/IWBEP/CM_MGW_RT/022", f"Value of '{name}' exceeds length {size}")
        elif edm == "Edm.Decimal":
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise SapError(400, "/IWBEP/CM_MGW_RT/023", f"Value of '{name}' is not a decimal") from None
            digits = number.as_tuple()
            fraction = max(-digits.exponent, 0)
            if (
                not isinstance(value, str)
                or (size and len(digits.digits) > size)
                or (scale is not None and fraction > scale)
            ):
                raise SapError(
                    400, "/IWBEP/CM_MGW_RT/023", f"Value of '{name}' does not fit Edm.Decimal({size})"
                )
        elif edm == "Edm.DateTime":
            if not isinstance(value, str) or not DATE.match(value):
                raise SapError(400, "/IWBEP/CM_MGW_RT/024", f"Value of '{name}' is not /Date(ms)/")
        elif edm == "Edm.Boolean" and not isinstance(value, bool):
            raise SapError(400, "/IWBEP/CM_MGW_RT/025", f"Value of '{name}' is not a boolean")


def navigation_entries(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and "results" in value:
        value = value["results"]
    if not isinstance(value, list):
        raise SapError(400, "/IWBEP/CM_MGW_RT/026", "Navigation property must hold a list of entries")
    return value


def parse_filter(expr: str | None) -> dict[str, str]:
    """`A eq 'x' and B eq 'y'` (what the connector sends) → {A: x, B: y}."""
    out: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", expr or ""):
        m = re.fullmatch(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*", clause)
        if m:
            out[m.group(1)] = m.group(2).replace("''", "'")
        elif clause.strip():
            raise SapError(400, "/IWBEP/CM_MGW_RT/030", f"Unsupported $filter clause: {clause}")
    return out
