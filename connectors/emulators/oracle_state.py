"""The Oracle Fusion emulator's books: the resources it serves (receivables and payables invoices), how a
create body is validated against them, and the posted items with their numbering, payments and
cancellations. The HTTP side (ADF REST routes, auth, media types, faults) is `oracle_rest.py`.

Resource definitions come from ../shared/erp/oracle when present (the Singer schemas list each resource's
fields and types), else from the built-in list of the fields the connector uses (`FALLBACK_FIELDS`).
"""

from __future__ import annotations

import itertools
import json
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

SHARED_ORACLE = Path(__file__).resolve().parents[2].parent / "shared" / "erp" / "oracle"

SCHEMA_FILES = {
    "invoices": "fusion-payables-invoices.singer-schema.json",
    "receivablesInvoices": "fusion-receivablesInvoices.singer-schema.json",
}
# Fields the real resources take on create that the Singer read schemas do not list (child collections and
# create-only attributes), from Oracle's documented create payloads.
CREATE_ONLY = {
    "invoices": {"invoiceLines"},
    "receivablesInvoices": {"receivablesInvoiceLines", "CrossReference", "Comments"},
}
FALLBACK_FIELDS = {
    "invoices": {
        "InvoiceNumber",
        "InvoiceCurrency",
        "InvoiceAmount",
        "InvoiceDate",
        "BusinessUnit",
        "Supplier",
        "SupplierSite",
        "Description",
        "invoiceLines",
        "InvoiceGroup",
        "InvoiceType",
        "UniqueRemittanceIdentifier",  # in the real schema too (the invoice's RF reference, ADR 0042)
    },
    "receivablesInvoices": {
        "TransactionNumber",
        "TransactionSource",
        "TransactionType",
        "BusinessUnit",
        "BillToCustomerNumber",
        "TransactionDate",
        "InvoiceCurrencyCode",
        "PaymentTerms",
        "CrossReference",
        "Comments",
        "receivablesInvoiceLines",
        "DueDate",
        "BillingDate",
        "StructuredPaymentReference",  # in the real schema too (the invoice's RF reference, ADR 0042)
    },
}
REQUIRED = {
    "invoices": ("InvoiceNumber", "InvoiceCurrency", "InvoiceAmount", "BusinessUnit", "Supplier"),
    "receivablesInvoices": (
        "TransactionSource",
        "TransactionType",
        "BusinessUnit",
        "BillToCustomerNumber",
        "InvoiceCurrencyCode",
        "TransactionDate",
        "receivablesInvoiceLines",
    ),
}
AP_LINE_TYPES = {"Item", "Freight", "Miscellaneous"}


class OracleError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def body(self) -> dict[str, Any]:
        return {
            "title": "Bad Request" if self.status == 400 else "Error",
            "status": str(self.status),
            "o:errorDetails": [{"detail": self.detail, "o:errorCode": self.code}],
        }


def load_field_types(shared: Path | None) -> dict[str, dict[str, list[str]]]:
    types: dict[str, dict[str, list[str]]] = {}
    for resource, name in SCHEMA_FILES.items():
        path = (shared / name) if shared else None
        if path is not None and path.exists():
            props = json.loads(path.read_text()).get("properties", {})
            types[resource] = {
                k: list(v.get("type", [])) if isinstance(v.get("type"), list) else [v.get("type", "string")]
                for k, v in props.items()
            }
    return types


def validate(resource: str, body: dict[str, Any], field_types: dict[str, dict[str, list[str]]]) -> None:
    """Refuse a create body as Oracle would: unknown attribute, wrong type, missing attribute, a bad AP line
    type or line variance, an AR transaction number over 20 characters."""
    known = field_types.get(resource)
    allowed = (set(known) if known else FALLBACK_FIELDS[resource]) | CREATE_ONLY[resource]
    for name, value in body.items():
        if name not in allowed:
            raise OracleError(
                400, "UNKNOWN_ATTRIBUTE", f"The attribute {name} is not valid for {resource}."
            )
        if known and name in known and not _type_ok(value, known[name]):
            raise OracleError(400, "INVALID_TYPE", f"The value of attribute {name} has the wrong type.")
    for name in REQUIRED[resource]:
        if body.get(name) in (None, "", []):
            raise OracleError(400, "MISSING_ATTRIBUTE", f"The attribute {name} is required.")
    if resource == "invoices":
        lines = body.get("invoiceLines") or []
        for line in lines:
            if line.get("LineType", "Item") not in AP_LINE_TYPES:
                raise OracleError(
                    400, "AP_INVALID_LINE_TYPE", f"Line type {line.get('LineType')} is invalid."
                )
        total = sum((Decimal(str(ln.get("LineAmount", "0"))) for ln in lines), Decimal(0))
        if lines and total != Decimal(str(body["InvoiceAmount"])):
            raise OracleError(
                400,
                "AP_LINE_VARIANCE",
                f"The invoice amount {body['InvoiceAmount']} does not equal the line total {total}.",
            )
    else:
        number = body.get("TransactionNumber")
        if number is not None and len(str(number)) > 20:
            raise OracleError(
                400, "AR_TRX_NUMBER_LENGTH", "The transaction number exceeds 20 characters."
            )


def _type_ok(value: Any, allowed: list[str]) -> bool:
    if value is None:
        return "null" in allowed
    checks = {
        # Oracle accepts numbers as JSON numbers or numeric strings; the connector sends strings
        "number": lambda v: isinstance(v, int | float) or _is_decimal(v),
        "integer": lambda v: isinstance(v, int) or (isinstance(v, str) and v.isdigit()),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return any(checks.get(t, lambda v: True)(value) for t in allowed if t != "null")


def _is_decimal(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True


class OracleState:
    """The posted invoices per resource with their numbering and counters; one lock keeps them consistent
    across the server's request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, dict[int, dict[str, Any]]] = {"invoices": {}, "receivablesInvoices": {}}
        self.ids = itertools.count(300100187050001)
        self.creates = 0  # successful creates (what exactly-once tests count)
        self.upserts = 0  # creates of an existing AP invoice answered as an update (Upsert-Mode: true)

    def postings(self, resource: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(item)
                for name, items in self.items.items()
                if resource in (None, name)
                for item in items.values()
            ]

    def create(self, resource: str, body: dict[str, Any], upsert: bool) -> tuple[int, dict[str, Any]]:
        """Record a validated body: (201, the new item), or (200, the updated AP invoice: Upsert-Mode)."""
        with self.lock:
            items = self.items[resource]
            existing = self._find_duplicate(resource, body)
            if existing is not None:
                if resource == "invoices" and upsert:
                    existing.update({k: v for k, v in body.items() if k != "invoiceLines"})
                    self.upserts += 1
                    return 200, dict(existing)
                raise OracleError(400, "DUPLICATE_NUMBER", self._duplicate_message(resource, body))
            new_id = next(self.ids)
            item = dict(body)
            if resource == "invoices":
                item.update(
                    InvoiceId=new_id,
                    AmountPaid="0",
                    PaidStatus="Unpaid",
                    CanceledFlag=False,
                    ValidationStatus="Validated",
                    ApprovalStatus="Approved",
                )
            else:
                lines = body["receivablesInvoiceLines"]
                amount = sum(
                    (
                        Decimal(str(ln.get("UnitSellingPrice", 0))) * Decimal(str(ln.get("Quantity", 1)))
                        + sum(
                            (
                                Decimal(str(t.get("TaxAmount", 0)))
                                for t in ln.get("receivablesInvoiceLineTaxLines", [])
                            ),
                            Decimal(0),
                        )
                        for ln in lines
                    ),
                    Decimal(0),
                )
                if not body.get("TransactionNumber"):
                    item["TransactionNumber"] = str(new_id)
                item.update(
                    CustomerTransactionId=new_id,
                    InvoiceStatus="Complete",
                    EnteredAmount=str(amount),
                    InvoiceBalanceAmount=str(amount),
                )
            items[new_id] = item
            self.creates += 1
            return 201, dict(item)

    @staticmethod
    def _duplicate_message(resource: str, body: dict[str, Any]) -> str:
        if resource == "invoices":
            return (
                f"The invoice number {body['InvoiceNumber']} already exists for supplier {body['Supplier']}."
            )
        return (
            f"The transaction number {body.get('TransactionNumber')} already exists "
            f"in transaction source {body['TransactionSource']}."
        )

    def _find_duplicate(self, resource: str, body: dict[str, Any]) -> dict[str, Any] | None:
        for item in self.items[resource].values():
            if resource == "invoices":
                if (item["InvoiceNumber"], item["Supplier"]) == (body["InvoiceNumber"], body["Supplier"]):
                    return item
            elif body.get("TransactionNumber") and (item["TransactionNumber"], item["TransactionSource"]) == (
                body["TransactionNumber"],
                body["TransactionSource"],
            ):
                return item
        return None

    def query(self, resource: str, q: str | None, limit: int, offset: int) -> dict[str, Any]:
        filters = {}
        for clause in (q or "").split(";"):
            if "=" in clause:
                name, _, value = clause.partition("=")
                filters[name.strip()] = value.strip().strip("'\"")
        with self.lock:
            matches = [
                dict(item)
                for _, item in sorted(self.items[resource].items())
                if all(str(item.get(k)) == v for k, v in filters.items())
            ]
        page = matches[offset : offset + limit]
        return {
            "items": page,
            "count": len(page),
            "hasMore": offset + len(page) < len(matches),
            "limit": limit,
            "offset": offset,
            "links": [],
        }

    def pay(self, resource: str, item_id: int, amount: Decimal) -> dict[str, Any] | None:
        with self.lock:
            item = self.items[resource].get(item_id)
            if item is None:
                return None
            if resource == "invoices":
                paid = Decimal(item["AmountPaid"]) + amount
                item["AmountPaid"] = str(paid)
                total = Decimal(str(item["InvoiceAmount"]))
                item["PaidStatus"] = "Paid" if paid >= total else "Partially paid"
            else:
                item["InvoiceBalanceAmount"] = str(Decimal(item["InvoiceBalanceAmount"]) - amount)
            return dict(item)

    def cancel(self, resource: str, item_id: int) -> dict[str, Any] | None:
        with self.lock:
            item = self.items[resource].get(item_id)
            if item is None:
                return None
            if resource == "invoices":
                item["CanceledFlag"] = True
            else:
                item["InvoiceStatus"] = "Void"
            return dict(item)
