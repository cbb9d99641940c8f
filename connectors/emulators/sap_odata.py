"""A local SAP S/4HANA OData v2 endpoint: supplier invoices (create, read), billing documents and
journal-entry items (read), with SAP's CSRF and session behaviour, for tests and the demo.

Shaped by the real service definitions in ../shared/erp/sap-odata: when the EDMX files are there, a posted
property the entity type does not have, a string longer than its MaxLength, a decimal with more digits than
its precision, a malformed `/Date(ms)/`, or a property the service marks `sap:creatable="false"` is refused
with an SAP error body, and `$metadata` serves the real document. Without them, a small built-in property
list applies and `$metadata` answers 404.

Session behaviour copied from SAP Gateway: a GET with `X-CSRF-Token: Fetch` answers a token and sets session
cookies; a write without a token, with a token from another session, or without the cookies answers 403 with
`X-CSRF-Token: Required`. `csrf_loss_probability` (and `lose_next_sessions`) emulate a load-balanced system
whose next application server does not know the session: a valid token is refused once in a while.

Control endpoints (not SAP's): `/_emulator/postings`, `/_emulator/faults`, `/_emulator/reset`,
`/_emulator/billing-documents` (create one: {"reference", "payer", "amount", "currency", "company_code"}),
`/_emulator/billing-documents/{id}/payments` ({"amount"}), `/_emulator/billing-documents/{id}/cancel`,
`/_emulator/supplier-invoices/{number}/{year}/reverse`.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import random
import re
import secrets
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.emulators.faults import FaultInjector
from connectors.emulators.sap_odata_edmx import (
    CHILD_TYPES,
    REQUIRED_HEADER,
    SERVICES,
    SHARED_SAP_ODATA,
    SapError,
    check_properties,
    load_metadata,
    navigation_entries,
    parse_filter,
)
from connectors.emulators.server import EmulatorHandler, EmulatorServer
from connectors.sap_odata import from_sap_date


class SapODataState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.supplier_invoices: dict[tuple[str, str], dict[str, Any]] = {}
        self.billing_documents: dict[str, dict[str, Any]] = {}
        self.journal_items: list[dict[str, Any]] = []
        self.paid_on: dict[str, Decimal] = {}  # billing document -> paid so far (its clearing status)
        self.numbers = itertools.count(5105600001)
        self.billing_numbers = itertools.count(90000001)
        self.creates = 0


class SapODataEmulator(EmulatorServer):
    thread_name = "sap-odata-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "LEDGERHUB",
        password: str = "Welcome1",  # noqa: S107 - an emulator's test credential
        metadata_dir: Path | None = SHARED_SAP_ODATA,
        faults: FaultInjector | None = None,
        csrf_loss_probability: float = 0.0,
        seed: int = 1,
        **kw: Any,
    ) -> None:
        super().__init__(host, port, **kw)
        self.username, self.password = username, password
        self.faults = faults or FaultInjector()
        self.state = SapODataState()
        self.types, self.documents = load_metadata(metadata_dir)
        self.sessions: dict[str, str] = {}  # session cookie -> CSRF token
        self.csrf_loss_probability = csrf_loss_probability
        self.lose_next_sessions = 0
        self.csrf_rejections = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every posting and billing document, and clear the faults."""
        self.state = SapODataState()
        self.faults.clear()

    @property
    def shaped_by_real_metadata(self) -> bool:
        return set(self.documents) == set(SERVICES)

    def postings(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(v) for v in self.state.supplier_invoices.values()]

    def lose_session(self) -> bool:
        with self._lock:
            if self.lose_next_sessions > 0:
                self.lose_next_sessions -= 1
                return True
            return self._rng.random() < self.csrf_loss_probability

    # --- business ------------------------------------------------------------------------------

    def create_supplier_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        check_properties("A_SupplierInvoiceType", body, self.types)
        for name in REQUIRED_HEADER:
            if body.get(name) in (None, ""):
                raise SapError(400, "M8/077", f"Enter a value for field {name}")
        items = navigation_entries(body.get("to_SupplierInvoiceItemGLAcct", []))
        taxes = navigation_entries(body.get("to_SupplierInvoiceTax", []))
        if not items:
            raise SapError(400, "M8/321", "Enter at least one item")
        for item in items:
            check_properties("A_SupplierInvoiceItemGLAcctType", item, self.types)
        for tax in taxes:
            check_properties("A_SupplierInvoiceTaxType", tax, self.types)
        signed = sum(
            (
                Decimal(i["SupplierInvoiceItemAmount"]) * (1 if i.get("DebitCreditCode", "S") == "S" else -1)
                for i in items
            ),
            Decimal(0),
        )
        gross = signed + sum((Decimal(t["TaxAmount"]) for t in taxes), Decimal(0))
        if gross != Decimal(body["InvoiceGrossAmount"]):
            raise SapError(
                400, "M8/534", f"Balance not zero: {body['InvoiceGrossAmount']} debits, {gross} credits"
            )
        with self.state.lock:
            for existing in self.state.supplier_invoices.values():
                if (existing["SupplierInvoiceIDByInvcgParty"], existing["InvoicingParty"]) == (
                    body["SupplierInvoiceIDByInvcgParty"],
                    body["InvoicingParty"],
                ) and not existing["IsReversed"]:
                    raise SapError(
                        400,
                        "M8/108",
                        "Check if invoice already entered under accounting document "
                        f"{existing['SupplierInvoice']} {existing['FiscalYear']}",
                    )
            number = str(next(self.state.numbers))
            year = str(from_sap_date(body["PostingDate"]).year)  # fiscal year = calendar year here
            record = {k: v for k, v in body.items() if k not in CHILD_TYPES}
            record.update(
                SupplierInvoice=number,
                FiscalYear=year,
                SupplierInvoiceStatus="5",
                IsReversed=False,
                items=items,
                taxes=taxes,
            )
            self.state.supplier_invoices[(number, year)] = record
            self.state.creates += 1
            return {k: v for k, v in record.items() if k not in ("items", "taxes")}

    def add_billing_document(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            number = str(next(self.state.billing_numbers))
            amount = Decimal(str(data["amount"]))
            doc = {
                "BillingDocument": number,
                "DocumentReferenceID": data["reference"],
                "PayerParty": data.get("payer", "10100001"),
                "CompanyCode": data.get("company_code", "1010"),
                "TotalGrossAmount": str(amount),
                "TransactionCurrency": data.get("currency", "EUR"),
                "InvoiceClearingStatus": "A",
                "BillingDocumentIsCancelled": False,
                "FiscalYear": "2026",
                "AccountingDocument": str(9400000000 + int(number) % 1000000),
            }
            self.state.billing_documents[number] = doc
            self.state.journal_items.append(self._journal_item(doc, amount))
            return dict(doc)

    def _journal_item(self, doc: dict[str, Any], amount: Decimal) -> dict[str, Any]:
        return {
            "ID": secrets.token_hex(8),
            "CompanyCode": doc["CompanyCode"],
            "Customer": doc["PayerParty"],
            "TransactionCurrency": doc["TransactionCurrency"],
            "AmountInTransactionCurrency": str(amount),
            "GLAccount": "12100000",
            "Ledger": "0L",
        }

    def pay_billing_document(self, number: str, amount: Decimal) -> dict[str, Any] | None:
        with self.state.lock:
            doc = self.state.billing_documents.get(number)
            if doc is None:
                return None
            self.state.journal_items.append(self._journal_item(doc, -amount))
            # SAP clears per document; the journal items (all this API shows) are per customer
            paid = self.state.paid_on.get(number, Decimal(0)) + amount
            self.state.paid_on[number] = paid
            doc["InvoiceClearingStatus"] = "C" if paid >= Decimal(doc["TotalGrossAmount"]) else "B"
            return dict(doc)


def _check_session(handler: _Handler) -> bool:
    em = handler.emulator
    cookie = handler.headers.get("Cookie") or ""
    match = re.search(r"SAP_SESSIONID_LH1_100=([\w-]+)", cookie)
    token = handler.headers.get("X-CSRF-Token")
    if not match or em.sessions.get(match.group(1)) != token or token is None:
        return False
    if em.lose_session():
        em.sessions.pop(match.group(1), None)  # the next application server never heard of this session
        return False
    return True


class _Handler(EmulatorHandler):
    emulator: SapODataEmulator
    server_version = "SAP NetWeaver Application Server (LedgerHub OData emulator)"

    def _sap_error(self, exc: SapError) -> None:
        self.send_json(exc.status, exc.body())

    def _authorised(self) -> bool:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        em = self.emulator
        return hmac.compare_digest(user, em.username) and hmac.compare_digest(password, em.password)

    def _service(self, path: str) -> tuple[str | None, str]:
        m = re.match(r"^/sap/opu/odata/sap/(\w+)(/.*)?$", path)
        if not m or m.group(1) not in SERVICES:
            return None, ""
        return m.group(1), m.group(2) or "/"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/_emulator/"):
            self._control_get(url.path)
            return
        if not self._authorised():
            self.send_json(
                401,
                {"error": {"code": "401", "message": {"lang": "en", "value": "Unauthorized"}}},
                **{"WWW-Authenticate": 'Basic realm="SAP"'},
            )
            return
        service, rest = self._service(url.path)
        if service is None:
            self._sap_error(SapError(404, "/IWFND/MED/170", "No service found"))
            return
        headers: dict[str, str] = {}
        if (self.headers.get("X-CSRF-Token") or "").lower() == "fetch":
            session, token = secrets.token_urlsafe(16), secrets.token_urlsafe(18)
            self.emulator.sessions[session] = token
            headers = {
                "X-CSRF-Token": token,
                "Set-Cookie": f"SAP_SESSIONID_LH1_100={session}; path=/; HttpOnly",
            }
        try:
            status, body = self._read(service, rest, parse_qs(url.query))
        except SapError as exc:
            self._sap_error(exc)
            return
        if isinstance(body, bytes):
            self.send_body(status, body, "application/xml", headers)
        else:
            self.send_json(status, body, **headers)

    def _read(self, service: str, rest: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        em = self.emulator
        if rest == "/$metadata":
            if service not in em.documents:
                raise SapError(404, "/IWFND/MED/170", "Metadata not available in this emulator")
            return 200, em.documents[service]
        if rest == "/":
            return 200, {"d": {"EntitySets": [SERVICES[service][0]]}}
        filters = parse_filter(unquote(query.get("$filter", [""])[0]))
        with em.state.lock:
            if service == "API_SUPPLIERINVOICE_PROCESS_SRV":
                m = re.fullmatch(r"/A_SupplierInvoice\(SupplierInvoice='(\w+)',FiscalYear='(\d+)'\)", rest)
                rows = [
                    {k: v for k, v in r.items() if k not in ("items", "taxes")}
                    for r in em.state.supplier_invoices.values()
                ]
                key = ("SupplierInvoice", "FiscalYear")
                if m:
                    filters = dict(zip(key, m.groups(), strict=True))
                elif rest != "/A_SupplierInvoice":
                    raise SapError(404, "/IWBEP/CM_MGW_RT/004", "Resource not found")
            elif service == "API_BILLING_DOCUMENT_SRV":
                m = re.fullmatch(r"/A_BillingDocument\('(\w+)'\)", rest)
                rows = [dict(d) for d in em.state.billing_documents.values()]
                if m:
                    filters = {"BillingDocument": m.group(1)}
                elif rest != "/A_BillingDocument":
                    raise SapError(404, "/IWBEP/CM_MGW_RT/004", "Resource not found")
            else:
                if rest != "/A_JournalEntryItemBasic":
                    raise SapError(404, "/IWBEP/CM_MGW_RT/004", "Resource not found")
                rows = [dict(i) for i in em.state.journal_items]
                m = None
        rows = [r for r in rows if all(str(r.get(k)) == v for k, v in filters.items())]
        if m:
            if not rows:
                raise SapError(404, "/IWBEP/CM_MGW_RT/004", "Resource not found")
            return 200, {"d": rows[0]}
        return 200, {"d": {"results": rows}}

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except ValueError:
            self._sap_error(SapError(413, "/IWFND/CM_BEC/026", "Request too large"))
            return
        if url.path.startswith("/_emulator/"):
            self._control_post(url.path, raw)
            return
        if not self._authorised():
            self.send_json(
                401, {"error": {"code": "401", "message": {"lang": "en", "value": "Unauthorized"}}}
            )
            return
        if not _check_session(self):
            self.emulator.csrf_rejections += 1
            self.send_json(
                403,
                {
                    "error": {
                        "code": "/IWFND/CM_BEC/026",
                        "message": {"lang": "en", "value": "CSRF token validation failed"},
                    }
                },
                **{"X-CSRF-Token": "Required"},
            )
            return
        service, rest = self._service(url.path)
        if service == "API_SUPPLIERINVOICE_PROCESS_SRV" and rest == "/$batch":
            self._batch(raw)
        elif service == "API_SUPPLIERINVOICE_PROCESS_SRV" and rest == "/A_SupplierInvoice":
            self._create(raw)
        else:
            self._sap_error(SapError(405 if service else 404, "/IWBEP/CM_MGW_RT/005", "Method not allowed"))

    def _create(self, raw: bytes) -> None:
        em = self.emulator
        fault = em.faults.next()
        plan = em.faults.plan
        if self.fault_before(
            fault,
            error_5xx=lambda: self._sap_error(SapError(500, "/IWFND/CM_BEC/004", "Internal server error")),
            reject=lambda: self._sap_error(
                SapError(400, "F5/153", "Supplier is blocked for posting in company code")
            ),
        ):
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise SapError(400, "/IWBEP/CM_MGW_RT/010", "Body must be an entry")
            created = em.create_supplier_invoice(body)
        except ValueError:
            self._sap_error(SapError(400, "/IWBEP/CM_MGW_RT/010", "Malformed JSON"))
            return
        except SapError as exc:
            self._sap_error(exc)
            return
        if self.fault_after(fault, plan.hang_seconds, plan.slow_seconds):
            return
        self.send_json(201, {"d": created})

    def _batch(self, raw: bytes) -> None:
        match = re.search(r"boundary=([^;]+)", self.headers.get("Content-Type") or "")
        if not match:
            self._sap_error(SapError(400, "/IWBEP/CM_MGW_RT/040", "Batch request without boundary"))
            return
        boundary = match.group(1).strip('"')
        out_boundary = "batchresponse_" + secrets.token_hex(8)
        parts = []
        for part in raw.decode().split(f"--{boundary}")[1:]:
            if part.startswith("--"):
                break
            request = re.search(r"^GET (\S+) HTTP/1\.1", part, re.MULTILINE)
            if not request:
                status, body = 400, SapError(400, "/IWBEP/CM_MGW_RT/041", "Only GET parts supported").body()
            else:
                target = urlsplit(request.group(1))
                service, rest = self._service(
                    target.path
                    if target.path.startswith("/")
                    else "/sap/opu/odata/sap/API_SUPPLIERINVOICE_PROCESS_SRV/" + target.path
                )
                try:
                    status, body = self._read(service or "", rest, parse_qs(target.query))
                except SapError as exc:
                    status, body = exc.status, exc.body()
            payload = json.dumps(body)
            parts.append(
                f"--{out_boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: "
                f"binary\r\n\r\nHTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n\r\n{payload}\r\n"
            )
        body_bytes = ("".join(parts) + f"--{out_boundary}--\r\n").encode()
        self.send_body(202, body_bytes, f"multipart/mixed; boundary={out_boundary}")

    def _control_get(self, path: str) -> None:
        em = self.emulator
        if path == "/_emulator/postings":
            with em.state.lock:
                self.send_json(
                    200,
                    {
                        "postings": em.postings(),
                        "creates": em.state.creates,
                        "billing_documents": list(em.state.billing_documents.values()),
                    },
                )
        elif not self.control_common("GET", path.split("/")[2:], {}):
            self.send_json(404, {"error": "not found"})

    def _control_post(self, path: str, raw: bytes) -> None:
        em = self.emulator
        data = json.loads(raw or b"{}")
        parts = path.split("/")[2:]
        if self.control_common("POST", parts, data):
            return
        if parts == ["billing-documents"]:
            self.send_json(201, em.add_billing_document(data))
        elif len(parts) == 3 and parts[0] == "billing-documents" and parts[2] in ("payments", "cancel"):
            if parts[2] == "payments":
                result = em.pay_billing_document(parts[1], Decimal(str(data["amount"])))
            else:
                with em.state.lock:
                    result = em.state.billing_documents.get(parts[1])
                    if result:
                        result["BillingDocumentIsCancelled"] = True
            self.send_json(404 if result is None else 200, result or {"error": "not found"})
        elif len(parts) == 4 and parts[0] == "supplier-invoices" and parts[3] == "reverse":
            with em.state.lock:
                record = em.state.supplier_invoices.get((parts[1], parts[2]))
                if record:
                    record["IsReversed"] = True
            self.send_json(404 if record is None else 200, {"reversed": record is not None})
        else:
            self.send_json(404, {"error": "not found"})


SapODataEmulator.handler_class = _Handler
