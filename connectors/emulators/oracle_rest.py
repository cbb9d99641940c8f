"""A local Oracle Fusion REST endpoint for receivables and payables invoices, for tests and the demo.

Shaped by the real definitions in ../shared/erp/oracle (the Singer schemas list each resource's fields
and types; the example requests show what Oracle accepts): when those files are present, a posted field
that the real resource does not have, or a value of the wrong type, is refused as Oracle would; without
them a built-in list of the fields the connector uses applies. Behaviour copied from the real service:

* writes need `Content-Type: application/vnd.oracle.adf.resourceitem+json` (else 415);
* collections answer `{items, count, hasMore, limit, offset, links}` and filter with `q=Field=value;...`;
* an AP invoice number is unique per supplier; `Upsert-Mode: true` turns a duplicate create into an update;
* an AR transaction number (at most 20 characters) is unique within its transaction source;
* errors are `application/vnd.oracle.adf.error+json` with `o:errorDetails`;
* basic auth, a static bearer token, or OAuth client credentials from `/oauth2/v1/token`.

Control endpoints for tests (not Oracle's): `/_emulator/postings`, `/_emulator/faults`, `/_emulator/reset`,
`/_emulator/{resource}/{id}/payments` ({"amount"}) and `/_emulator/{resource}/{id}/cancel`.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import secrets
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.emulators.faults import FaultInjector, FaultKind
from connectors.emulators.server import EmulatorHandler, EmulatorServer

API_ROOT = "/fscmRestApi/resources/11.13.18.05"
ITEM_MEDIA_TYPE = "application/vnd.oracle.adf.resourceitem+json"
COLLECTION_MEDIA_TYPE = "application/vnd.oracle.adf.resourcecollection+json"
ERROR_MEDIA_TYPE = "application/vnd.oracle.adf.error+json"
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


def _load_field_types(shared: Path | None) -> dict[str, dict[str, list[str]]]:
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
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, dict[int, dict[str, Any]]] = {"invoices": {}, "receivablesInvoices": {}}
        self.ids = itertools.count(300100187050001)
        self.creates = 0  # successful creates (what exactly-once tests count)
        self.upserts = 0  # creates of an existing AP invoice answered as an update (Upsert-Mode: true)


class OracleRestEmulator(EmulatorServer):
    thread_name = "oracle-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = "integration",
        password: str | None = "secret",  # noqa: S107 - an emulator's test credential
        client_id: str = "ledgerhub",
        client_secret: str = "s3cret",  # noqa: S107 - an emulator's test credential
        shared_dir: Path | None = SHARED_ORACLE,
        faults: FaultInjector | None = None,
        **kw: Any,
    ):
        super().__init__(host, port, **kw)
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.static_tokens: set[str] = set()
        self.faults = faults or FaultInjector()
        self.state = OracleState()
        self.field_types = _load_field_types(shared_dir if shared_dir and shared_dir.is_dir() else None)
        self.timeout_processing = True

    def reset(self) -> None:
        """Forget every posting and clear the faults (OAuth tokens already issued stay valid)."""
        self.state = OracleState()
        self.faults.clear()

    @property
    def shaped_by_real_schemas(self) -> bool:
        return set(self.field_types) == set(SCHEMA_FILES)

    def postings(self, resource: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                dict(item)
                for name, items in self.state.items.items()
                if resource in (None, name)
                for item in items.values()
            ]

    # --- validation and business rules -----------------------------------------------------------

    def validate(self, resource: str, body: dict[str, Any]) -> None:
        known = self.field_types.get(resource)
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

    def create(self, resource: str, body: dict[str, Any], upsert: bool) -> tuple[int, dict[str, Any]]:
        self.validate(resource, body)
        with self.state.lock:
            items = self.state.items[resource]
            existing = self._find_duplicate(resource, body)
            if existing is not None:
                if resource == "invoices" and upsert:
                    existing.update({k: v for k, v in body.items() if k != "invoiceLines"})
                    self.state.upserts += 1
                    return 200, dict(existing)
                raise OracleError(400, "DUPLICATE_NUMBER", self._duplicate_message(resource, body))
            new_id = next(self.state.ids)
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
            self.state.creates += 1
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
        for item in self.state.items[resource].values():
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
        with self.state.lock:
            matches = [
                dict(item)
                for _, item in sorted(self.state.items[resource].items())
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
        with self.state.lock:
            item = self.state.items[resource].get(item_id)
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
        with self.state.lock:
            item = self.state.items[resource].get(item_id)
            if item is None:
                return None
            if resource == "invoices":
                item["CanceledFlag"] = True
            else:
                item["InvoiceStatus"] = "Void"
            return dict(item)


class _Handler(EmulatorHandler):
    emulator: OracleRestEmulator
    server_version = "Oracle-HTTP-Server (LedgerHub emulator)"

    def _error(self, exc: OracleError) -> None:
        self.send_json(exc.status, exc.body(), ERROR_MEDIA_TYPE)

    def _authorised(self) -> bool:
        em = self.emulator
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return value in em.tokens or value in em.static_tokens
        if scheme.lower() == "basic" and em.username is not None:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user, em.username) and hmac.compare_digest(password, em.password or "")
        return False

    def _route(self) -> tuple[str | None, int | None]:
        path = urlsplit(self.path).path
        if not path.startswith(API_ROOT + "/"):
            return None, None
        parts = path[len(API_ROOT) + 1 :].split("/")
        if parts[0] not in SCHEMA_FILES or len(parts) > 2:
            return None, None
        if len(parts) == 2:
            return (parts[0], int(parts[1])) if parts[1].isdigit() else (None, None)
        return parts[0], None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/_emulator/"):
            self._control_get(url.path)
            return
        if not self._authorised():
            self.send_json(401, {"title": "Unauthorized", "status": "401"}, ERROR_MEDIA_TYPE)
            return
        resource, item_id = self._route()
        if resource is None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
            return
        params = parse_qs(url.query)
        if item_id is None:
            limit = min(int(params.get("limit", ["25"])[0]), 500)
            offset = int(params.get("offset", ["0"])[0])
            self.send_json(
                200,
                self.emulator.query(resource, params.get("q", [None])[0], limit, offset),
                COLLECTION_MEDIA_TYPE,
            )
            return
        with self.emulator.state.lock:
            item = self.emulator.state.items[resource].get(item_id)
        if item is None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
        else:
            self.send_json(200, item, ITEM_MEDIA_TYPE)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except ValueError:
            self.send_json(413, {"title": "Request Entity Too Large", "status": "413"}, ERROR_MEDIA_TYPE)
            return
        if url.path == "/oauth2/v1/token":
            self._token(raw)
            return
        if url.path.startswith("/_emulator/"):
            self._control_post(url.path, raw)
            return
        if not self._authorised():
            self.send_json(401, {"title": "Unauthorized", "status": "401"}, ERROR_MEDIA_TYPE)
            return
        resource, item_id = self._route()
        if resource is None or item_id is not None:
            self.send_json(404, {"title": "Not Found", "status": "404"}, ERROR_MEDIA_TYPE)
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != ITEM_MEDIA_TYPE:
            self.send_json(415, {"title": "Unsupported Media Type", "status": "415"}, ERROR_MEDIA_TYPE)
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._error(OracleError(400, "INVALID_JSON", "The request body is not a JSON object."))
            return
        self._create(resource, body, (self.headers.get("Upsert-Mode") or "").lower() == "true")

    def _create(self, resource: str, body: dict[str, Any], upsert: bool) -> None:
        em = self.emulator
        fault: FaultKind | None = em.faults.next()
        plan = em.faults.plan
        if self.fault_before(
            fault,
            error_5xx=lambda: self.send_json(
                500, {"title": "Internal Server Error", "status": "500"}, ERROR_MEDIA_TYPE
            ),
            reject=lambda: self._error(
                OracleError(400, "AP_SUPPLIER_ON_HOLD", "The supplier is on payment hold.")
            ),
        ):
            return
        try:
            status, item = em.create(resource, body, upsert)
        except OracleError as exc:
            self._error(exc)
            return
        if self.fault_after(fault, plan.hang_seconds, plan.slow_seconds):
            return
        self.send_json(
            status,
            item,
            ITEM_MEDIA_TYPE,
            Location=f"{API_ROOT}/{resource}/{item.get('InvoiceId') or item.get('CustomerTransactionId')}",
        )

    def _token(self, raw: bytes) -> None:
        em = self.emulator
        form = parse_qs(raw.decode())
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        client = ""
        if scheme.lower() == "basic":
            client = base64.b64decode(value).decode()
        if form.get("grant_type") != ["client_credentials"] or client != f"{em.client_id}:{em.client_secret}":
            self.send_json(401, {"error": "invalid_client"})
            return
        token = secrets.token_urlsafe(24)
        em.tokens.add(token)
        self.send_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _control_get(self, path: str) -> None:
        if path == "/_emulator/postings":
            self.send_json(
                200, {"postings": self.emulator.postings(), "creates": self.emulator.state.creates}
            )
        elif not self.control_common("GET", path.split("/")[2:], {}):
            self.send_json(404, {"error": "not found"})

    def _control_post(self, path: str, raw: bytes) -> None:
        em = self.emulator
        data = json.loads(raw or b"{}")
        parts = path.split("/")[2:]
        if self.control_common("POST", parts, data):
            return
        if (
            len(parts) == 3
            and parts[0] in SCHEMA_FILES
            and parts[1].isdigit()
            and parts[2] in ("payments", "cancel")
        ):
            if parts[2] == "payments":
                result = em.pay(parts[0], int(parts[1]), Decimal(str(data["amount"])))
            else:
                result = em.cancel(parts[0], int(parts[1]))
            self.send_json(404 if result is None else 200, result or {"error": "not found"})
        else:
            self.send_json(404, {"error": "not found"})


OracleRestEmulator.handler_class = _Handler
