"""SAP S/4HANA OData v2: supplier invoices (the customer's payable) and read-back of billing documents and
journal-entry items, over httpx with SAP's CSRF protocol.

What the real APIs allow decides what this connector does (see the EDMX files in ../shared/erp/sap-odata):

* `API_SUPPLIERINVOICE_PROCESS_SRV/A_SupplierInvoice` is creatable: the customer's payable is one deep POST
  (header, G/L account items, tax). Its natural duplicate key is `SupplierInvoiceIDByInvcgParty` (16
  characters) within the invoicing party, so a retry first looks that key up.
* `API_BILLING_DOCUMENT_SRV` is read-only (`sap:creatable="false"`): a provider's receivable is posted through
  the Journal Entry SOAP service (`sap-soap`) or billed in SD; for the provider this connector finds the
  billing document whose `DocumentReferenceID` carries our invoice reference and reads its clearing status.
  `deliver` for the provider target refuses with a configuration error that says so.
* `API_JOURNALENTRYITEMBASIC_SRV/A_JournalEntryItemBasic` gives line items per customer; reconciliation uses
  it as a cross-check of a customer's open receivables.

The CSRF protocol is ours (pyodata does none of it): fetch a token with `X-CSRF-Token: Fetch` on a GET, keep
the session cookies, send both on every POST and on `$batch`; a 403 with `X-CSRF-Token: Required` (an expired
session, or a load balancer that sent the request to another application server) re-fetches once.

Settings: `base_url`, `username`/`password` (basic) , `sap_client`, `company_code`, `gl_account`, `tax_code`,
`timeout`, `verify` (TLS). Party ids: `sap_supplier` (invoicing party of the provider, for the payable).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from chaincode import creditor_ref
from connectors.base import (
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    Delivery,
    ErpRef,
    ErpStatus,
    InvoiceDocument,
    RetryableError,
)
from connectors.http import exchange

SUPPLIER_INVOICE_SRV = "/sap/opu/odata/sap/API_SUPPLIERINVOICE_PROCESS_SRV"
BILLING_DOCUMENT_SRV = "/sap/opu/odata/sap/API_BILLING_DOCUMENT_SRV"
JOURNAL_ENTRY_ITEM_SRV = "/sap/opu/odata/sap/API_JOURNALENTRYITEMBASIC_SRV"
REFERENCE_MAX = 16  # SupplierInvoiceIDByInvcgParty and DocumentReferenceID are CHAR 16
_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d+)?\)/$")


def sap_reference(invoice_id: str) -> str:
    """Our invoice id as a 16-character SAP reference (deterministic, so a retry finds the first post)."""
    if len(invoice_id) <= REFERENCE_MAX:
        return invoice_id
    return "LH" + base64.b32encode(hashlib.sha256(invoice_id.encode()).digest()).decode()[:14]


def to_sap_date(value: dt.date) -> str:
    midnight = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return f"/Date({int(midnight.timestamp() * 1000)})/"


def from_sap_date(value: str) -> dt.datetime:
    match = _DATE.match(value or "")
    if not match:
        raise ValueError(f"not an OData v2 date: {value!r}")
    return dt.datetime.fromtimestamp(int(match.group(1)) / 1000, dt.UTC)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class CsrfSession:
    """One SAP session: a CSRF token bound to the session cookies, fetched lazily and re-fetched once when
    SAP says it is required again. Thread-safe: the delivery engine posts from several threads."""

    def __init__(self, client: httpx.Client, service_root: str) -> None:
        self._client = client
        self._root = service_root
        self._token: str | None = None
        self._lock = threading.Lock()

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None:
                if refresh:
                    self._client.cookies.clear()
                response = self._client.get(self._root + "/", headers={"X-CSRF-Token": "Fetch"})
                token = response.headers.get("x-csrf-token")
                if response.status_code >= 500 or response.status_code == 429:
                    # SAP is down or busy: nothing was posted, a later attempt may pass
                    raise RetryableError(f"SAP CSRF token fetch failed: HTTP {response.status_code}")
                if response.status_code >= 400 or not token or token.lower() == "required":
                    raise ConnectorConfigError(
                        f"SAP did not issue a CSRF token (HTTP {response.status_code})"
                    )
                self._token = token
            return self._token

    def write(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        for attempt in (1, 2):
            headers["X-CSRF-Token"] = self.token(refresh=attempt == 2)
            response = self._client.request(method, path, headers=headers, **kwargs)
            if response.status_code == 403 and response.headers.get("x-csrf-token", "").lower() == "required":
                continue  # token unknown to this application server: fetch a new one once
            return response
        return response


class SapODataConnector:
    """Payable (customer target) as an SAP supplier invoice; receivable (provider target) read-back only."""

    name = "sap-odata"

    def __init__(self, config: ConnectorConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        s = config.settings
        if not s.get("base_url"):
            raise ConnectorConfigError("sap-odata needs settings.base_url")
        self.target = config.target
        self.settings = s
        params = {"sap-client": str(s["sap_client"])} if s.get("sap_client") else None
        self._client = httpx.Client(
            base_url=str(s["base_url"]).rstrip("/"),
            auth=(s.get("username", ""), s.get("password", "")),
            params=params,
            timeout=float(s.get("timeout", 10)),
            verify=s.get("verify", True),
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._sessions = {root: CsrfSession(self._client, root) for root in (SUPPLIER_INVOICE_SRV,)}

    # --- HTTP plumbing -------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if method == "GET":
            send = lambda: self._client.get(path, **kwargs)  # noqa: E731
        else:
            send = lambda: self._sessions[SUPPLIER_INVOICE_SRV].write(method, path, **kwargs)  # noqa: E731
        response = exchange("SAP", method, path, send)
        if response.status_code == 403 and response.headers.get("x-csrf-token", "").lower() == "required":
            # refused twice for the session, even with a fresh token: nothing was posted, try again later
            raise RetryableError("SAP kept refusing the CSRF token")
        if response.status_code in (401, 403):
            raise ConnectorConfigError(f"SAP refused the request: HTTP {response.status_code}")
        return response

    @staticmethod
    def errors(response: httpx.Response) -> list[str]:
        """SAP's `{"error": {"code", "message": {"lang", "value"}, "innererror": {"errordetails": []}}}`."""
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return [response.text[:500]]
        messages = [f"{error.get('code', '')} {error.get('message', {}).get('value', '')}".strip()]
        for detail in (error.get("innererror") or {}).get("errordetails") or []:
            text = f"{detail.get('code', '')} {detail.get('message', '')}".strip()
            if text and text not in messages:
                messages.append(text)
        return messages

    def _results(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        response = self._call("GET", path, params={**params, "$format": "json"})
        if response.status_code != 200:
            raise RetryableError(f"SAP read {path} failed: HTTP {response.status_code}")
        body = response.json()["d"]
        return list(body.get("results", [])) if isinstance(body, dict) and "results" in body else [body]

    # --- payloads --------------------------------------------------------------------------------

    def supplier_invoice(self, doc: InvoiceDocument) -> dict[str, Any]:
        inv, s = doc.invoice, self.settings
        supplier = doc.seller.erp_ids.get("sap_supplier")
        if not supplier:
            raise ConnectorConfigError(f"no sap_supplier id for {doc.seller.org}")
        company = str(s.get("company_code", "1010"))
        currency = str(inv["currency"])
        issued = dt.date.fromisoformat(str(inv.get("issued_at") or dt.date.today().isoformat())[:10])
        tax_code = str(s.get("tax_code", "V1"))
        items = [
            {
                "SupplierInvoiceItem": str(n),
                "CompanyCode": company,
                "GLAccount": str(s.get("gl_account", "61003000")),
                "DocumentCurrency": currency,
                "SupplierInvoiceItemAmount": str(abs(Decimal(str(ln["amount"])))),
                "DebitCreditCode": "S" if Decimal(str(ln["amount"])) >= 0 else "H",
                "TaxCode": tax_code,
                "SupplierInvoiceItemText": f"{ln['charge_id']} {ln.get('quantity', '1')}"[:50],
            }
            for n, ln in enumerate(inv["lines"], start=1)
        ]
        body: dict[str, Any] = {
            "CompanyCode": company,
            "DocumentDate": to_sap_date(issued),
            "PostingDate": to_sap_date(issued),
            "SupplierInvoiceIDByInvcgParty": sap_reference(str(inv["id"])),
            "InvoicingParty": supplier,
            "DocumentCurrency": currency,
            "InvoiceGrossAmount": str(inv["total"]),
            "DocumentHeaderText": str(inv["id"])[:25],
            "SupplierPostingLineItemText": f"LedgerHub {inv['id']}"[:50],
            "TaxIsCalculatedAutomatically": False,
            "SupplierInvoiceIsCreditMemo": "X" if doc.is_credit_note else "",
            "to_SupplierInvoiceItemGLAcct": {"results": items},
        }
        if not doc.is_credit_note:
            body["PaymentReference"] = creditor_ref.for_invoice(str(inv["id"]))
        if Decimal(str(inv.get("tax") or "0")):
            body["to_SupplierInvoiceTax"] = {
                "results": [
                    {
                        "TaxCode": tax_code,
                        "DocumentCurrency": currency,
                        "TaxAmount": str(inv["tax"]),
                        "TaxBaseAmountInTransCrcy": str(inv["subtotal"]),
                    }
                ]
            }
        return body

    # --- the Connector interface -----------------------------------------------------------------

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        if self.target == "provider":
            raise ConnectorConfigError(
                "SAP's billing document OData API is read-only: post the receivable with sap-soap "
                "and use sap-odata to read it back"
            )
        if delivery.attempt > 1:
            found = self.lookup(document, delivery)
            if found is not None:
                return found
        response = self._call(
            "POST",
            f"{SUPPLIER_INVOICE_SRV}/A_SupplierInvoice",
            json=self.supplier_invoice(document),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if response.status_code == 201:
            return self._supplier_ref(response.json()["d"])
        messages = self.errors(response)
        if any("already" in m.lower() for m in messages):
            found = self.lookup(document, delivery)
            if found is not None:
                return found
        raise BusinessRejection(
            f"SAP refused {document.invoice_id}: HTTP {response.status_code}", erp_messages=messages
        )

    def _supplier_ref(self, item: Mapping[str, Any]) -> ErpRef:
        return ErpRef(
            self.name,
            f"{item['SupplierInvoice']}/{item['FiscalYear']}",
            "customer",
            {"reference": str(item.get("SupplierInvoiceIDByInvcgParty", ""))},
        )

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        reference = sap_reference(document.invoice_id)
        if self.target == "customer":
            supplier = document.seller.erp_ids.get("sap_supplier", "")
            rows = self._results(
                f"{SUPPLIER_INVOICE_SRV}/A_SupplierInvoice",
                {
                    "$filter": f"SupplierInvoiceIDByInvcgParty eq {_quote(reference)} "
                    f"and InvoicingParty eq {_quote(supplier)}"
                },
            )
            live = [r for r in rows if not r.get("IsReversed")]
            return self._supplier_ref(live[0]) if live else None
        rows = self._results(
            f"{BILLING_DOCUMENT_SRV}/A_BillingDocument",
            {"$filter": f"DocumentReferenceID eq {_quote(reference)}"},
        )
        if not rows:
            return None
        return ErpRef(self.name, str(rows[0]["BillingDocument"]), "provider", {"reference": reference})

    def status(self, ref: ErpRef) -> ErpStatus:
        if self.target == "customer":
            number, year = ref.document_id.split("/")
            (item,) = self._results(
                f"{SUPPLIER_INVOICE_SRV}/A_SupplierInvoice(SupplierInvoice={_quote(number)},"
                f"FiscalYear={_quote(year)})",
                {},
            )
            amount = Decimal(str(item["InvoiceGrossAmount"]))
            # the supplier invoice carries no payment data; a reversal cancels it
            state = "cancelled" if item.get("IsReversed") else "open"
            return ErpStatus(state, amount, Decimal(0), str(item["DocumentCurrency"]))
        (doc,) = self._results(f"{BILLING_DOCUMENT_SRV}/A_BillingDocument({_quote(ref.document_id)})", {})
        amount = Decimal(str(doc["TotalGrossAmount"]))
        clearing = doc.get("InvoiceClearingStatus") or ""
        if doc.get("BillingDocumentIsCancelled"):
            return ErpStatus("cancelled", amount, Decimal(0), str(doc["TransactionCurrency"]))
        if clearing == "C":
            return ErpStatus("paid", amount, amount, str(doc["TransactionCurrency"]))
        if clearing == "B":
            paid = self.partly_paid_amount(doc, amount)
            return ErpStatus("partially_paid", amount, paid, str(doc["TransactionCurrency"]))
        return ErpStatus("open", amount, Decimal(0), str(doc["TransactionCurrency"]))

    def partly_paid_amount(self, doc: Mapping[str, Any], amount: Decimal) -> Decimal:
        """What has been paid on a partly cleared billing document. The journal-entry items this API offers
        carry no document number, only the customer, so the open amount is the customer's: it belongs to
        this document only when the customer has no other uncleared billing document. Otherwise the
        amount cannot be told and 0 is reported (reconciliation records nothing yet, and the whole amount
        once the document is cleared): a payment on the ledger must never be an estimate."""
        payer, company = str(doc["PayerParty"]), str(doc["CompanyCode"])
        others = [
            d for d in self._results(
                f"{BILLING_DOCUMENT_SRV}/A_BillingDocument",
                {"$filter": f"PayerParty eq {_quote(payer)} and CompanyCode eq {_quote(company)}"},
            )
            if str(d.get("BillingDocument")) != str(doc["BillingDocument"])
            and (d.get("InvoiceClearingStatus") or "") != "C" and not d.get("BillingDocumentIsCancelled")
        ]
        if others:
            return Decimal(0)
        open_amount = self.customer_open_amount(payer, company)
        return amount - open_amount if Decimal(0) <= open_amount <= amount else Decimal(0)

    def customer_open_amount(self, customer: str, company_code: str) -> Decimal:
        """Sum of the customer's journal-entry items in the company code (its open receivables)."""
        rows = self._results(
            f"{JOURNAL_ENTRY_ITEM_SRV}/A_JournalEntryItemBasic",
            {
                "$filter": f"Customer eq {_quote(customer)} and CompanyCode eq {_quote(company_code)}",
                "$select": "AmountInTransactionCurrency",
            },
        )
        return sum((Decimal(str(r["AmountInTransactionCurrency"])) for r in rows), Decimal(0))

    def batch_read(self, paths: Sequence[str]) -> list[dict[str, Any]]:
        """Several GETs in one `$batch` round trip (multipart/mixed, answered 202), e.g. the statuses of many
        supplier invoices during reconciliation. Needs the CSRF token like any write."""
        boundary = f"batch_{uuid.uuid4().hex}"
        parts = [
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"GET {p} HTTP/1.1\r\nAccept: application/json\r\n\r\n"
            for p in paths
        ]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        response = self._call(
            "POST",
            f"{SUPPLIER_INVOICE_SRV}/$batch",
            content=body,
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        )
        if response.status_code != 202:
            raise RetryableError(f"SAP $batch failed: HTTP {response.status_code}")
        return parse_batch_response(response.headers["content-type"], response.content)

    def close(self) -> None:
        self._client.close()


def parse_batch_response(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The JSON bodies of a `$batch` answer's parts, in order (non-JSON parts become {"status": n})."""
    import json

    match = re.search(r"boundary=([^;]+)", content_type)
    if not match:
        raise RetryableError("SAP $batch answer without a boundary")
    boundary = match.group(1).strip('"')
    results = []
    for part in body.decode().split(f"--{boundary}")[1:]:
        if part.startswith("--"):
            break
        status_line = re.search(r"HTTP/1\.1 (\d{3})", part)
        payload = part.split("\r\n\r\n", 2)[-1].strip()
        try:
            results.append(json.loads(payload))
        except ValueError:
            results.append({"status": int(status_line.group(1)) if status_line else 0})
    return results
