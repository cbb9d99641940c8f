"""SAP S/4HANA connector: posts an invoice as a journal entry through the synchronous SOAP service
`JournalEntryCreateRequestConfirmation_In` (request `JournalEntryBulkCreateRequest`).

- provider target: an AR entry: DebtorItem (the buyer, debit the total), revenue Items per invoice line
  and an output-tax ProductTaxItem (credits);
- customer target: an AP entry: CreditorItem (the seller, credit the total), expense Items and an input-tax
  ProductTaxItem (debits). Credit notes flip every sign.

Exactly once: `MessageHeader/UUID` is SAP's idempotency key; we send the delivery's `message_uuid`,
fixed across retries, stamped by `MessageUuidPlugin` (zeep's WS-Addressing plugin would mint a fresh
MessageID per call, which is exactly what must not happen). A resend with the same UUID returns SAP's
first confirmation, so `lookup` *is* a resend: the SOAP service has no read operation.

Errors: a Log with MaximumLogItemSeverityCode >= 3 is a BusinessRejection (with SAP's notes); a SOAP
Client fault too (the request itself is wrong); timeouts, resets, dropped answers, 5xx and Server faults
are UnclearOutcome; a refused or failed connect is RetryableError (nothing was sent).

Settings (`ConnectorConfig.settings`): `wsdl` (path or URL; default: the emulator's WSDL), `endpoint`
(service URL; default: the WSDL's address), `sap_client`, `username`/`password` (basic auth),
`client_cert`/`client_key` (TLS client certificate), `verify` (bool or CA bundle path), `timeout`
(read, seconds), `connect_timeout`, `soap_version` ("1.1"/"1.2"), `company_code`, `revenue_gl_account`,
`expense_gl_account`, `output_tax_code`, `input_tax_code`, `created_by_user`, `logical_system`,
`debtor`/`creditor` (fallback partner numbers), `status_url` (the payment-state read endpoint).
"""

from __future__ import annotations

import base64
import contextvars
import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from lxml import etree

from chaincode import creditor_ref
from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    ErpRef,
    ErpStatus,
    InvoiceDocument,
    Payment,
    RetryableError,
    UnclearOutcome,
)

NS = "http://sap.com/xi/SAPSCORE/SFIN"
DEFAULT_WSDL = Path(__file__).resolve().parent / "emulators" / "sap_journal_entry.wsdl"
OPERATION = "JournalEntryCreateRequestConfirmation_In"
EMULATOR_STATUS_PATH = "/_emulator/journal-entries"
_current_uuid: contextvars.ContextVar[str | None] = contextvars.ContextVar("sap_message_uuid", default=None)


def sap_reference(invoice_id: str, max_length: int = 16) -> str:
    """The invoice id as SAP can hold it: DocumentReferenceID is at most 16 characters. Longer ids become
    "LH" + 14 characters of base32(SHA-256(id)): stable, collision-resistant, and the full id travels in
    the open item's DocumentItemText."""
    if len(invoice_id) <= max_length:
        return invoice_id
    digest = base64.b32encode(hashlib.sha256(invoice_id.encode()).digest()).decode()
    return "LH" + digest[: max_length - 2]


def stamp_message_uuid(envelope: etree._Element, message_uuid: str) -> None:
    """Set MessageHeader/UUID of the bulk request to `message_uuid` and each entry's to a UUID derived
    from it (uuid5), so every byte that identifies the message is the same on every resend."""
    request = envelope.find(f".//{{{NS}}}JournalEntryBulkCreateRequest")
    if request is None:
        return
    headers = [request.find("MessageHeader")] + [
        entry.find("MessageHeader") for entry in request.findall("JournalEntryCreateRequest")
    ]
    base = uuid.UUID(message_uuid)
    for index, header in enumerate(headers):
        if header is None:
            continue
        value = message_uuid if index == 0 else str(uuid.uuid5(base, f"entry-{index}"))
        node = header.find("UUID")
        if node is None:
            node = etree.Element("UUID")
            position = 1 if header.find("ID") is not None else 0
            header.insert(position, node)
        node.text = value


class MessageUuidPlugin:
    """zeep plugin: stamps the current delivery's message UUID into the outgoing envelope (egress)."""

    def egress(self, envelope: etree._Element, http_headers: dict[str, str], operation: Any,
               binding_options: Any) -> tuple[etree._Element, dict[str, str]]:
        message_uuid = _current_uuid.get()
        if message_uuid is None:
            raise ConnectorConfigError("SAP message sent without a delivery message UUID")
        stamp_message_uuid(envelope, message_uuid)
        return envelope, http_headers

    def ingress(self, envelope: etree._Element, http_headers: dict[str, str],
                operation: Any) -> tuple[etree._Element, dict[str, str]]:
        return envelope, http_headers


class StatusReader(Protocol):
    """Where payment state comes from. The emulator's JSON endpoint here; for a real system the OData
    API_JOURNALENTRYITEMBASIC_SRV (clearing document / clearing date of the open item) plugs in here."""

    def __call__(self, ref: ErpRef) -> ErpStatus: ...


class EmulatorStatusReader:
    def __init__(self, session: requests.Session, base_url: str, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __call__(self, ref: ErpRef) -> ErpStatus:
        key = f"{ref.details.get('company_code')}/{ref.document_id}/{ref.details.get('fiscal_year')}"
        try:
            response = self.session.get(f"{self.base_url}/{key}", timeout=self.timeout)
        except requests.RequestException as exc:
            raise RetryableError(f"SAP status read failed: {exc}") from exc
        if response.status_code == 404:
            raise BusinessRejection(f"SAP has no journal entry {key}")
        if response.status_code != 200:
            raise RetryableError(f"SAP status read answered {response.status_code}")
        data = response.json()
        payments = tuple(
            Payment(
                payment_id=str(p["payment_id"]),
                amount=Decimal(str(p["amount"])),
                paid_at=dt.datetime.fromisoformat(p["paid_at"].replace("Z", "+00:00")) if p.get("paid_at")
                else None,
            )
            for p in data.get("payments", [])
        )
        return ErpStatus(
            state=data["state"],
            amount=Decimal(str(data["amount"])),
            paid_amount=Decimal(str(data["paid_amount"])),
            currency=data["currency"],
            payments=payments,
        )


class _Session(requests.Session):
    """A session whose configured `verify` wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE: requests lets
    those environment variables override `session.verify`, which would silently drop a configured SAP CA."""

    pinned_verify: bool | str | None = None

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.pinned_verify is not None and verify is None:
            merged["verify"] = self.pinned_verify
        return merged


def _is_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        stack.extend([current.__cause__, current.__context__])
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        stack.append(getattr(current, "reason", None) if isinstance(getattr(current, "reason", None),
                                                                       BaseException) else None)
    return "Connection refused" in str(exc)


def _amount(value: Decimal, currency: str) -> dict[str, Any]:
    return {"_value_1": value, "currencyCode": currency}


class SapSoapConnector:
    """`Connector` for SAP's Journal Entry SOAP service. One instance per target; thread-safe."""

    def __init__(self, config: ConnectorConfig, *, status_reader: StatusReader | None = None) -> None:
        import zeep
        from zeep.transports import Transport

        self.name = config.name
        self.target = config.target
        s: Mapping[str, Any] = config.settings
        self.settings = s
        self.session = _Session()
        if s.get("username"):
            self.session.auth = (str(s["username"]), str(s.get("password") or ""))
        if s.get("client_cert"):
            cert = str(s["client_cert"])
            self.session.cert = (cert, str(s["client_key"])) if s.get("client_key") else cert
        if "verify" in s:
            self.session.verify = self.session.pinned_verify = s["verify"]
        self.read_timeout = float(s.get("timeout", 30))
        self.connect_timeout = float(s.get("connect_timeout", min(self.read_timeout, 10)))
        transport = Transport(
            session=self.session, timeout=float(s.get("wsdl_timeout", 60)),
            operation_timeout=(self.connect_timeout, self.read_timeout),  # type: ignore[arg-type]
        )
        wsdl = str(s.get("wsdl") or DEFAULT_WSDL)
        try:
            self.client = zeep.Client(wsdl, transport=transport, plugins=[MessageUuidPlugin()])
        except requests.RequestException as exc:
            raise RetryableError(f"cannot fetch the SAP WSDL {wsdl}: {exc}") from exc
        except OSError as exc:
            raise ConnectorConfigError(f"cannot load the SAP WSDL {wsdl}: {exc}") from exc
        binding = "binding_soap12" if str(s.get("soap_version", "1.1")) == "1.2" else "binding"
        if f"{{{NS}}}{binding}" not in self.client.wsdl.bindings:
            raise ConnectorConfigError(f"the WSDL {wsdl} has no binding {binding!r} (soap_version)")
        endpoint = s.get("endpoint")
        if endpoint is None:
            service = next(iter(self.client.wsdl.services.values()))
            endpoint = service.ports[binding].binding_options["address"]
        self.endpoint = self._with_sap_client(str(endpoint), s.get("sap_client"))
        self.service = self.client.create_service(f"{{{NS}}}{binding}", self.endpoint)
        if status_reader is None:
            parts = urlsplit(str(s.get("endpoint") or endpoint))
            status_url = s.get("status_url") or urlunsplit(
                (parts.scheme, parts.netloc, EMULATOR_STATUS_PATH, "", ""))
            status_reader = EmulatorStatusReader(self.session, str(status_url), self.read_timeout)
        self.status_reader = status_reader

    @staticmethod
    def _with_sap_client(endpoint: str, sap_client: Any) -> str:
        if not sap_client:
            return endpoint
        parts = urlsplit(endpoint)
        query = (parts.query + "&" if parts.query else "") + urlencode({"sap-client": str(sap_client)})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    @property
    def breaker_key(self) -> str:
        """Circuit-breaker key: one SAP system = one endpoint (host + client)."""
        return f"{self.name}|{self.endpoint}"

    # --- the request ----------------------------------------------------------------------------

    def build_request(self, document: InvoiceDocument, delivery: Delivery) -> dict[str, Any]:
        """The JournalEntryBulkCreateRequest as zeep keyword arguments. Deterministic from the invoice
        (dates from the invoice, not the clock), so a resend carries the same content."""
        s = self.settings
        invoice = document.invoice
        currency = str(invoice["currency"])
        sign = Decimal(-1) if document.is_credit_note else Decimal(1)
        ar = delivery.target == "provider"
        reference = sap_reference(document.invoice_id)
        issued = str(invoice.get("issued_at") or "")[:10] or _period_end(invoice)
        item_text = document.invoice_id[:50]
        total = Decimal(str(invoice["total"])) * sign
        tax = Decimal(str(invoice.get("tax") or "0")) * sign
        subtotal = Decimal(str(invoice.get("subtotal") or invoice["total"])) * sign
        # AR: customer debit (+), revenue and output tax credit (-). AP: the mirror image.
        open_sign = Decimal(1) if ar else Decimal(-1)
        gl_key = "revenue_gl_account" if ar else "expense_gl_account"
        gl = str(s.get(gl_key) or ("4000000" if ar else "6000000"))
        tax_code = str(s.get("output_tax_code" if ar else "input_tax_code") or ("A1" if ar else "V1"))
        items = []
        for number, line in enumerate(invoice.get("lines", []), start=2):
            amount = Decimal(str(line["amount"])) * sign * -open_sign
            if amount == 0:
                continue
            items.append({
                "ReferenceDocumentItem": str(number),
                "GLAccount": {"_value_1": gl},
                "AmountInTransactionCurrency": _amount(amount, currency),
                "DebitCreditCode": "S" if amount > 0 else "H",
                "DocumentItemText": f"{line.get('charge_id', '')} {document.invoice_id}"[:50],
                "Tax": {"TaxCode": {"_value_1": tax_code}},
            })
        open_amount = total * open_sign
        open_item: dict[str, Any] = {
            "ReferenceDocumentItem": "1",
            "AmountInTransactionCurrency": _amount(open_amount, currency),
            "DebitCreditCode": "S" if open_amount > 0 else "H",
            "DocumentItemText": item_text,
            "AssignmentReference": reference,
        }
        if not document.is_credit_note:
            # the payer quotes it, the bank statement returns it: SAP clears the open item on it
            open_item["PaymentDetails"] = {"PaymentReference": creditor_ref.for_invoice(document.invoice_id)}
        entry: dict[str, Any] = {
            "OriginalReferenceDocumentType": "BKPFF",
            "OriginalReferenceDocument": reference,
            "BusinessTransactionType": "RFBU",
            "AccountingDocumentType": _doc_type(ar, document.is_credit_note),
            "DocumentReferenceID": reference,
            "DocumentHeaderText": f"LedgerHub {invoice.get('period') or ''}".strip()[:25],
            "CreatedByUser": str(s.get("created_by_user") or "LEDGERHUB")[:12],
            "CompanyCode": str(s.get("company_code") or "1010"),
            "DocumentDate": issued,
            "PostingDate": issued,
            "Item": items,
        }
        if s.get("logical_system"):
            entry["OriginalReferenceDocumentLogicalSystem"] = str(s["logical_system"])
        if ar:
            open_item["Debtor"] = self._partner(document.buyer.erp_ids, "sap_customer", "debtor")
            entry["DebtorItem"] = [_ordered(open_item, "Debtor")]
        else:
            open_item["Creditor"] = self._partner(document.seller.erp_ids, "sap_supplier", "creditor")
            entry["CreditorItem"] = [_ordered(open_item, "Creditor")]
        if tax != 0:
            tax_amount = tax * -open_sign
            entry["ProductTaxItem"] = [{
                "ReferenceDocumentItem": str(len(items) + 2),
                "TaxCode": {"_value_1": tax_code},
                "AmountInTransactionCurrency": _amount(tax_amount, currency),
                "DebitCreditCode": "S" if tax_amount > 0 else "H",
                "TaxBaseAmountInTransCrcy": _amount(subtotal * -open_sign, currency),
            }]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        header = {"ID": {"_value_1": reference}, "UUID": {"_value_1": delivery.message_uuid},
                  "CreationDateTime": now}
        entry_header = {"ID": {"_value_1": reference}, "CreationDateTime": now}
        return {
            "MessageHeader": header,
            "JournalEntryCreateRequest": [{"MessageHeader": entry_header, "JournalEntry": entry}],
        }

    def _partner(self, erp_ids: Mapping[str, str], key: str, fallback: str) -> str:
        value = erp_ids.get(key) or self.settings.get(fallback)
        if not value:
            raise ConnectorConfigError(
                f"no SAP partner number: set the party's erp_ids[{key!r}] or the connector's {fallback!r}"
            )
        return str(value)

    def build_envelope(self, document: InvoiceDocument, delivery: Delivery) -> etree._Element:
        """The SOAP envelope exactly as `deliver` sends it (for tests and troubleshooting)."""
        request = self.build_request(document, delivery)
        token = _current_uuid.set(delivery.message_uuid)
        try:
            return self.client.create_message(self.service, OPERATION, **request)
        finally:
            _current_uuid.reset(token)

    # --- Connector ---------------------------------------------------------------------------

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        return self._send(document, delivery)

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        """Resend with the same MessageHeader/UUID: SAP answers a known UUID with the original
        confirmation and posts nothing; an unknown one is posted now, which is what the caller wants."""
        return self._send(document, delivery)

    def status(self, ref: ErpRef) -> ErpStatus:
        return self.status_reader(ref)

    def close(self) -> None:
        self.session.close()

    def _send(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        from zeep import exceptions as zx

        request = self.build_request(document, delivery)
        token = _current_uuid.set(delivery.message_uuid)
        try:
            result = getattr(self.service, OPERATION)(**request)
        except requests.ConnectTimeout as exc:
            raise RetryableError(f"SAP connect timeout: {exc}") from exc
        except requests.Timeout as exc:
            raise UnclearOutcome(f"SAP did not answer in time: {exc}") from exc
        except requests.ConnectionError as exc:
            if _is_refused(exc):
                raise RetryableError(f"SAP refused the connection: {exc}") from exc
            raise UnclearOutcome(f"connection to SAP lost: {exc}") from exc
        except requests.RequestException as exc:
            raise UnclearOutcome(f"SAP request failed: {exc}") from exc
        except zx.Fault as exc:
            code = str(exc.code or "")
            if code.endswith(("Client", "Sender")):
                raise BusinessRejection(f"SAP refused the request: {exc.message}",
                                        erp_messages=[str(exc.message)]) from exc
            raise UnclearOutcome(f"SAP fault {code}: {exc.message}", erp_messages=[str(exc.message)]) from exc
        except zx.TransportError as exc:
            if exc.status_code in (401, 403):
                raise RetryableError(f"SAP refused our credentials ({exc.status_code})") from exc
            if exc.status_code and exc.status_code < 500 and exc.status_code != 408:
                raise RetryableError(f"SAP answered HTTP {exc.status_code} before processing") from exc
            raise UnclearOutcome(f"SAP answered HTTP {exc.status_code}") from exc
        except (zx.XMLSyntaxError, zx.ValidationError, etree.XMLSyntaxError) as exc:
            raise UnclearOutcome(f"unreadable SAP answer: {exc}") from exc
        finally:
            _current_uuid.reset(token)
        return self._interpret(result, delivery)

    def _interpret(self, result: Any, delivery: Delivery) -> ErpRef:
        notes = _notes(result.Log)
        severities = [_severity(result.Log)]
        confirmations = list(result.JournalEntryCreateConfirmation or [])
        for confirmation in confirmations:
            severities.append(_severity(confirmation.Log))
            notes.extend(n for n in _notes(confirmation.Log) if n not in notes)
        if max(severities) >= 3:
            raise BusinessRejection("SAP rejected the journal entry: " + "; ".join(notes),
                                    erp_messages=notes)
        entry = confirmations[0].JournalEntryCreateConfirmation if confirmations else None
        document_number = str(entry.AccountingDocument) if entry is not None else ""
        if not document_number.strip("0"):
            raise UnclearOutcome("SAP confirmed without a document number", erp_messages=notes)
        return ErpRef(
            system=self.name,
            document_id=document_number,
            target=delivery.target,
            details={
                "company_code": str(entry.CompanyCode),
                "fiscal_year": str(entry.FiscalYear),
                "message_uuid": delivery.message_uuid,
            },
        )


def _ordered(item: dict[str, Any], partner_key: str) -> dict[str, Any]:
    """zeep orders by the schema anyway; keep the partner right after ReferenceDocumentItem for logs."""
    ordered = {"ReferenceDocumentItem": item["ReferenceDocumentItem"], partner_key: item[partner_key]}
    ordered.update({k: v for k, v in item.items() if k not in ordered})
    return ordered


def _doc_type(ar: bool, credit_note: bool) -> str:
    if ar:
        return "DG" if credit_note else "DR"
    return "KG" if credit_note else "KR"


def _period_end(invoice: Mapping[str, Any]) -> str:
    period = str(invoice.get("period") or "")
    if len(period) == 7:
        year, month = int(period[:4]), int(period[5:])
        nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
        return (nxt - dt.timedelta(days=1)).isoformat()
    return dt.date.today().isoformat()


def _severity(log: Any) -> int:
    if log is None or log.MaximumLogItemSeverityCode is None:
        return 0
    try:
        return int(str(log.MaximumLogItemSeverityCode))
    except ValueError:
        return 0


def _notes(log: Any) -> list[str]:
    if log is None:
        return []
    notes = []
    for item in log.Item or []:
        type_id = f"{item.TypeID} " if getattr(item, "TypeID", None) else ""
        notes.append(f"{type_id}{item.Note}".strip())
    return notes
