"""A local SAP S/4HANA "Journal Entry - Post (synchronous)" SOAP endpoint for tests and the demo.

It speaks the real protocol (SOAP 1.1 over HTTP, document/literal, SAP's namespace and element names),
validates every request against its own XSD (`sap_journal_entry.xsd`, written for this project), and
behaves like SAP where LedgerHub depends on it:

- a confirmation carries AccountingDocument / CompanyCode / FiscalYear and a Log whose
  MaximumLogItemSeverityCode is 1 (success) or 3/4 (error, nothing posted, AccountingDocument 0000000000);
- `MessageHeader/UUID` is the exactly-once key: a resend with a known UUID returns the first answer and
  posts nothing (SAP keeps only successful messages in its idempotency store, so a rejected UUID may be
  sent again);
- it keeps what it posted, and tests can mark documents paid, partially paid or cancelled.

Endpoints (besides the SOAP one at `SERVICE_PATH`, WSDL at `SERVICE_PATH?wsdl`):

    GET  /_emulator/postings                                   every posting (JSON)
    GET  /_emulator/journal-entries/{company}/{doc}/{year}     one posting's open/paid state (JSON)
    POST /_emulator/journal-entries/{company}/{doc}/{year}/payments  {"amount": "10.00"} -> clearing
    POST /_emulator/journal-entries/{company}/{doc}/{year}/cancel
    GET|POST /_emulator/faults                                 fault plan and counts / configure
    GET  /_emulator/requests                                   raw SOAP requests received (bodies)
    POST /_emulator/reset

The status read endpoint stands in for what a real system answers through OData
(API_JOURNALENTRYITEMBASIC_SRV: clearing document and date of the open item).
"""

from __future__ import annotations

import base64
import hmac
import json
import ssl
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from connectors.emulators.faults import FaultInjector, FaultKind, FaultPlan
from connectors.emulators.sap_state import SapState, utc_stamp
from connectors.emulators.server import EmulatorHandler, EmulatorServer

NS = "http://sap.com/xi/SAPSCORE/SFIN"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SERVICE_PATH = "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"
HERE = Path(__file__).resolve().parent
WSDL_PATH = HERE / "sap_journal_entry.wsdl"
XSD_PATH = HERE / "sap_journal_entry.xsd"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _text(parent: etree._Element, path: str) -> str | None:
    node = parent.find(path)
    return None if node is None or node.text is None else node.text.strip()


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, name)
    if text is not None:
        node.text = text
    return node


def _log(parent: etree._Element, severity: str, items: list[tuple[str, str, str]]) -> None:
    log = _sub(parent, "Log")
    _sub(log, "MaximumLogItemSeverityCode", severity)
    for type_id, item_severity, note in items:
        item = _sub(log, "Item")
        _sub(item, "TypeID", type_id)
        _sub(item, "SeverityCode", item_severity)
        _sub(item, "Note", note[:200])


def _envelope(soap_ns: str, payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap-env": soap_ns})
    etree.SubElement(env, f"{{{soap_ns}}}Header")
    body = etree.SubElement(env, f"{{{soap_ns}}}Body")
    body.append(payload)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def soap_fault(soap_ns: str, code: str, message: str) -> bytes:
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap-env": soap_ns})
    body = etree.SubElement(env, f"{{{soap_ns}}}Body")
    fault = etree.SubElement(body, f"{{{soap_ns}}}Fault")
    if soap_ns == SOAP11:
        _sub(fault, "faultcode", f"soap-env:{code}")
        _sub(fault, "faultstring", message)
    else:
        code_el = etree.SubElement(fault, f"{{{soap_ns}}}Code")
        value = etree.SubElement(code_el, f"{{{soap_ns}}}Value")
        value.text = f"soap-env:{'Sender' if code == 'Client' else 'Receiver'}"
        reason = etree.SubElement(fault, f"{{{soap_ns}}}Reason")
        text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
        text.text = message
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


class SapSoapEmulator(EmulatorServer):
    """The emulator: `start()` serves on a free (or given) port in background threads, `stop()` ends it.
    Use as a context manager in tests."""

    thread_name = "sap-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        company_codes: set[str] | None = None,
        faults: FaultInjector | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, ssl_context)
        self.username = username
        self.password = password
        self.faults = faults or FaultInjector()
        self.state = SapState(company_codes)
        self.schema = etree.XMLSchema(etree.parse(str(XSD_PATH), _PARSER))

    @property
    def endpoint(self) -> str:
        return self.base_url + SERVICE_PATH

    @property
    def wsdl_url(self) -> str:
        return self.endpoint + "?wsdl"

    # --- the business -----------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no SOAP request is being handled (hung `timeout` faults post late)."""
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            with self.state.lock:
                if not self.state.inflight:
                    return True
            deadline.wait(0.01)
        return False

    def postings(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(p) for p in self.state.postings]

    def wsdl_text(self) -> bytes:
        text = WSDL_PATH.read_text()
        return text.replace("http://localhost:8301" + SERVICE_PATH, self.endpoint).encode()

    def process(self, request: etree._Element, soap_ns: str, fault: FaultKind | None) -> tuple[int, bytes]:
        """Validate and post one JournalEntryBulkCreateRequest; returns (HTTP status, response body)."""
        doc = etree.ElementTree(etree.fromstring(etree.tostring(request)))
        if not self.schema.validate(doc):
            errors = "; ".join(str(e.message) for e in list(self.schema.error_log)[:3])
            return 500, soap_fault(soap_ns, "Client", f"Request does not match the schema: {errors}")
        message_uuid = _text(request, "MessageHeader/UUID")
        if not message_uuid:
            return 500, soap_fault(soap_ns, "Client", "MessageHeader/UUID is required for exactly-once")
        with self.state.uuid_lock(message_uuid):
            first = self.state.answers.get(message_uuid)
            if first is not None:
                return 200, first
            if fault == "reject":
                return 200, self._confirmation(
                    soap_ns, request, message_uuid, entries=None,
                    error=("F5/201", "4" if uuid.UUID(message_uuid).int % 2 else "3",
                           "Posting period is not open for company code (injected rejection)"),
                )
            entries = request.findall("JournalEntryCreateRequest")
            problem = self._check(entries)
            if problem is not None:
                return 200, self._confirmation(soap_ns, request, message_uuid, entries=None, error=problem)
            results = [self._post(entry, message_uuid) for entry in entries]
            answer = self._confirmation(soap_ns, request, message_uuid, entries=results, error=None)
            self.state.answers[message_uuid] = answer
            return 200, answer

    def _check(self, entries: list[etree._Element]) -> tuple[str, str, str] | None:
        for wrapper in entries:
            entry = wrapper.find("JournalEntry")
            company = _text(entry, "CompanyCode") or ""
            if self.state.company_codes is not None and company not in self.state.company_codes:
                return ("F5/165", "3", f"Company code {company} is not defined")
            if not entry.findall("DebtorItem") and not entry.findall("CreditorItem"):
                return ("F5/702", "3", "A journal entry for an invoice needs a debtor or creditor item")
            total = Decimal(0)
            currencies = set()
            for item in entry.findall("*/AmountInTransactionCurrency"):
                total += Decimal(item.text)
                currencies.add(item.get("currencyCode"))
            if total != 0:
                return ("F5/702", "3", f"Balance in transaction currency: {total}")
            if len(currencies) != 1:
                return ("F5/704", "3", "Several transaction currencies in one journal entry")
        return None

    def _post(self, wrapper: etree._Element, message_uuid: str) -> dict[str, Any]:
        entry = wrapper.find("JournalEntry")
        company = _text(entry, "CompanyCode") or ""
        year = (_text(entry, "PostingDate") or "0000")[:4]
        open_items = entry.findall("DebtorItem") + entry.findall("CreditorItem")
        first = open_items[0]
        amount_el = first.find("AmountInTransactionCurrency")
        posting = {
            "company_code": company,
            "accounting_document": self.state.next_document(),
            "fiscal_year": year,
            "document_type": _text(entry, "AccountingDocumentType"),
            "reference": _text(entry, "DocumentReferenceID"),
            "original_reference": _text(entry, "OriginalReferenceDocument"),
            "item_text": _text(first, "DocumentItemText"),
            "payment_reference": _text(first, "PaymentDetails/PaymentReference"),
            "partner_kind": "debtor" if first.tag == "DebtorItem" else "creditor",
            "partner": _text(first, "Debtor") or _text(first, "Creditor"),
            "amount": str(abs(Decimal(amount_el.text))),
            "currency": amount_el.get("currencyCode"),
            "message_uuid": message_uuid,
            "posted_at": utc_stamp(),
            "payments": [],
            "cancelled": False,
        }
        with self.state.lock:
            self.state.postings.append(posting)
            self.state.by_key[(company, posting["accounting_document"], year)] = posting
        return posting

    def _confirmation(
        self,
        soap_ns: str,
        request: etree._Element,
        message_uuid: str,
        *,
        entries: list[dict[str, Any]] | None,
        error: tuple[str, str, str] | None,
    ) -> bytes:
        root = etree.Element(_q("JournalEntryBulkCreateConfirmation"), nsmap={"n0": NS})
        self._header(root, message_uuid)
        wrappers = request.findall("JournalEntryCreateRequest")
        for index, wrapper in enumerate(wrappers):
            confirmation = _sub(root, "JournalEntryCreateConfirmation")
            self._header(confirmation, _text(wrapper, "MessageHeader/UUID") or message_uuid)
            entry_conf = _sub(confirmation, "JournalEntryCreateConfirmation")
            if entries is not None:
                posting = entries[index]
                _sub(entry_conf, "AccountingDocument", posting["accounting_document"])
                _sub(entry_conf, "CompanyCode", posting["company_code"])
                _sub(entry_conf, "FiscalYear", posting["fiscal_year"])
                note = (f"Document posted successfully: BKPFF {posting['accounting_document']}"
                        f"{posting['company_code']}{posting['fiscal_year']}")
                _log(confirmation, "1", [("RW/609", "1", note)])
            else:
                entry = wrapper.find("JournalEntry")
                _sub(entry_conf, "AccountingDocument", "0000000000")
                _sub(entry_conf, "CompanyCode", _text(entry, "CompanyCode") or "0000")
                _sub(entry_conf, "FiscalYear", (_text(entry, "PostingDate") or "0000")[:4])
                assert error is not None
                _log(confirmation, error[1], [error, ("RW/022", error[1], "Error in document")])
        if error is not None:
            _log(root, error[1], [error])
        else:
            _log(root, "1", [("SRT/001", "1", f"{len(wrappers)} journal entries processed")])
        return _envelope(soap_ns, root)

    @staticmethod
    def _header(parent: etree._Element, reference_uuid: str) -> None:
        header = _sub(parent, "MessageHeader")
        _sub(header, "UUID", str(uuid.uuid5(uuid.NAMESPACE_URL, "sap-emulator-answer:" + reference_uuid)))
        _sub(header, "ReferenceUUID", reference_uuid)
        _sub(header, "CreationDateTime", utc_stamp())


class _Handler(EmulatorHandler):
    emulator: SapSoapEmulator
    server_version = "SAP NetWeaver Application Server (LedgerHub emulator)"

    def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8") -> None:
        self.send_body(status, body, content_type)

    def _json(self, status: int, value: Any) -> None:
        self.send_json(status, value)

    def _body(self) -> bytes:
        return self.read_body()

    def _authorised(self) -> bool:
        emulator = self.emulator
        if emulator.username is None:
            return True
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, emulator.username) and hmac.compare_digest(
            password, emulator.password or ""
        )

    # --- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == SERVICE_PATH and url.query.lower().startswith("wsdl"):
            self._send(200, self.emulator.wsdl_text())
        elif url.path == "/sap_journal_entry.xsd" or url.path == SERVICE_PATH.rsplit("/", 1)[0] + (
            "/sap_journal_entry.xsd"
        ):
            self._send(200, XSD_PATH.read_bytes())
        elif url.path == "/_emulator/postings":
            self._json(200, {"postings": self.emulator.postings()})
        elif url.path == "/_emulator/requests":
            with self.emulator.state.lock:
                self._json(200, {"requests": list(self.emulator.state.requests)})
        elif url.path == "/_emulator/faults":
            self._json(200, self.emulator.faults.snapshot())
        elif url.path.startswith("/_emulator/journal-entries/"):
            parts = url.path.split("/")[3:]
            status = self.emulator.state.status(*parts) if len(parts) == 3 else None
            if status is None:
                self._json(404, {"error": "no such journal entry"})
            else:
                self._json(200, status)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path == SERVICE_PATH:
            self._soap(body)
            return
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        if url.path == "/_emulator/faults":
            try:
                self.emulator.faults.apply(data)
            except ValueError as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, self.emulator.faults.snapshot())
        elif url.path == "/_emulator/reset":
            self.emulator.state.__init__(self.emulator.state.company_codes)  # type: ignore[misc]
            self.emulator.faults.clear()
            self._json(200, {"reset": True})
        elif url.path.startswith("/_emulator/journal-entries/"):
            parts = url.path.split("/")[3:]
            if len(parts) != 4 or parts[3] not in ("payments", "cancel"):
                self._json(404, {"error": "not found"})
                return
            if parts[3] == "payments":
                try:
                    amount = Decimal(str(data["amount"]))
                except (KeyError, ArithmeticError):
                    self._json(400, {"error": "amount (decimal string) required"})
                    return
                result = self.emulator.state.pay(*parts[:3], amount)
            else:
                result = self.emulator.state.cancel(*parts[:3])
            if result is None:
                self._json(404, {"error": "no such journal entry"})
            else:
                self._json(200, result)
        else:
            self._json(404, {"error": "not found"})

    def _soap(self, body: bytes) -> None:
        emulator = self.emulator
        if not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="SAP NetWeaver Application Server"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with emulator.state.lock:
            emulator.state.requests.append({
                "path": self.path,
                "soap_action": self.headers.get("SOAPAction"),
                "authorization": bool(self.headers.get("Authorization")),
                "body": body.decode("utf-8", "replace"),
            })
        try:
            envelope = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError as exc:
            self._send(500, soap_fault(SOAP11, "Client", f"XML not well-formed: {exc}"))
            return
        soap_ns = etree.QName(envelope).namespace or SOAP11
        request = envelope.find(f"{{{soap_ns}}}Body/{_q('JournalEntryBulkCreateRequest')}")
        if request is None:
            self._send(500, soap_fault(soap_ns, "Client", "Body must hold n0:JournalEntryBulkCreateRequest"))
            return
        message_uuid = _text(request, "MessageHeader/UUID") or ""
        with emulator.state.lock:
            busy = bool(message_uuid) and message_uuid in emulator.state.inflight
            if not busy:
                emulator.state.inflight.add(message_uuid)
        if busy:
            # like SAP: a message id still being processed is refused, not processed twice or rejected
            self._send(500, soap_fault(soap_ns, "Server", f"Message {message_uuid} is being processed"))
            return
        try:
            self._handle(request, soap_ns, message_uuid)
        finally:
            with emulator.state.lock:
                emulator.state.inflight.discard(message_uuid)

    def _handle(self, request: etree._Element, soap_ns: str, message_uuid: str) -> None:
        emulator = self.emulator
        known = message_uuid in emulator.state.answers
        # a known message id is answered from the idempotency store: it cannot be rejected any more
        allowed: tuple[FaultKind, ...] = (
            ("error_5xx", "timeout", "slow", "drop_after_post", "reset")
            if known else ("error_5xx", "timeout", "slow", "drop_after_post", "reset", "reject")
        )
        fault = emulator.faults.next(allowed=allowed)
        plan: FaultPlan = emulator.faults.plan
        if fault == "reset":
            self.abort(reset=True)
            return
        if fault == "error_5xx":
            self._send(500, soap_fault(soap_ns, "Server", "Internal server error (injected)"))
            return
        if fault == "timeout":
            emulator.wait(plan.hang_seconds)
        elif fault == "slow":
            emulator.wait(plan.slow_seconds)
        status, answer = emulator.process(request, soap_ns, fault)
        if fault in ("drop_after_post", "timeout"):
            self.abort(reset=False)
            return
        soap12 = "application/soap+xml; charset=utf-8"
        self._send(status, answer, "text/xml; charset=utf-8" if soap_ns == SOAP11 else soap12)


SapSoapEmulator.handler_class = _Handler
