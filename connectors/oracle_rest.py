"""Oracle Fusion Cloud ERP REST: the provider's receivable (`receivablesInvoices`) or the customer's
payable (`invoices`), with read-back of balance and payment status for reconciliation.

What makes a retry safe here is the document number, not a message id: Oracle has no idempotency key, but
an AP invoice number is unique per supplier and an AR transaction number is unique within its transaction
source. So every post is preceded, on a retry, by a `q=` look-up of that number; a payable is posted with
`Upsert-Mode: true` (Oracle updates instead of failing when it exists); and a "duplicate" refusal is
resolved by looking the document up, never by posting again.

Oracle AR transaction numbers are at most 20 characters; ledger invoice ids can be longer, so the AR
number is a deterministic short form (`LH` + 18 base32 characters of the id's SHA-256) and the full id
travels in `CrossReference` and `Comments`.

Settings (ConnectorConfig.settings): `base_url`; `auth` = {"type": "basic", "username", "password"} |
{"type": "bearer", "token"} (e.g. a JWT issued to the integration user) | {"type": "oauth", "token_url",
"client_id", "client_secret", "scope"?}; `business_unit`; AR: `transaction_source`, `transaction_type`,
`payment_terms`; AP: `supplier_site`; `timeout` seconds. Party ids come from `Party.erp_ids`
(`oracle_customer_number` for the bill-to customer, `oracle_supplier` / `oracle_supplier_site` for AP).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
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

API_ROOT = "/fscmRestApi/resources/11.13.18.05"
ITEM_MEDIA_TYPE = "application/vnd.oracle.adf.resourceitem+json"
AR_NUMBER_MAX = 20


def ar_transaction_number(invoice_id: str) -> str:
    if len(invoice_id) <= AR_NUMBER_MAX:
        return invoice_id
    digest = hashlib.sha256(invoice_id.encode()).digest()
    return "LH" + base64.b32encode(digest).decode()[:18]


def _num(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


class _Auth(httpx.Auth):
    """basic, static bearer, or OAuth client credentials with a cached token refreshed on expiry or 401."""

    def __init__(self, settings: Mapping[str, Any], timeout: float) -> None:
        self.kind = settings.get("type", "basic")
        self.settings = settings
        self.timeout = timeout
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        required = {"basic": ("username", "password"), "bearer": ("token",),
                    "oauth": ("token_url", "client_id", "client_secret")}
        if self.kind not in required:
            raise ConnectorConfigError(f"unknown Oracle auth type {self.kind!r}")
        # checked here, not at the first request: a KeyError in the middle of a delivery is a crash
        missing = [name for name in required[self.kind] if settings.get(name) is None]
        if missing:
            raise ConnectorConfigError(f"Oracle {self.kind} auth needs {', '.join(missing)}")

    def _header(self, refresh: bool = False) -> str:
        if self.kind == "basic":
            raw = f"{self.settings['username']}:{self.settings['password']}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self.kind == "bearer":
            return f"Bearer {self.settings['token']}"
        with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._expires:
                response = httpx.post(
                    self.settings["token_url"],
                    data={"grant_type": "client_credentials", "scope": self.settings.get("scope", "")},
                    auth=(self.settings["client_id"], self.settings["client_secret"]),
                    timeout=self.timeout,
                )
                if response.status_code >= 500 or response.status_code == 429:
                    # the token service is down or busy: nothing was posted, a later attempt may pass
                    raise RetryableError(f"OAuth token service unavailable: HTTP {response.status_code}")
                if response.status_code != 200:
                    raise ConnectorConfigError(f"OAuth token request refused: HTTP {response.status_code}")
                body = response.json()
                self._token = body["access_token"]
                self._expires = time.monotonic() + max(int(body.get("expires_in", 300)) - 30, 1)
            return f"Bearer {self._token}"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = self._header()
        response = yield request
        if response.status_code == 401 and self.kind == "oauth":
            request.headers["Authorization"] = self._header(refresh=True)
            yield request


class OracleRestConnector:
    """Receivable for the provider target, payable for the customer target."""

    name = "oracle-rest"

    def __init__(self, config: ConnectorConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        s = config.settings
        if not s.get("base_url"):
            raise ConnectorConfigError("oracle-rest needs settings.base_url")
        self.target = config.target
        self.settings = s
        timeout = float(s.get("timeout", 10))
        self._client = httpx.Client(
            base_url=str(s["base_url"]).rstrip("/") + API_ROOT,
            auth=_Auth(s.get("auth") or {"type": "basic", "username": "", "password": ""}, timeout),
            timeout=timeout,
            transport=transport,
            headers={"REST-Framework-Version": "4"},
        )

    @property
    def resource(self) -> str:
        return "receivablesInvoices" if self.target == "provider" else "invoices"

    # --- requests -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = exchange("Oracle", method, path, lambda: self._client.request(method, path, **kwargs))
        if response.status_code in (401, 403):
            raise ConnectorConfigError(f"Oracle refused the credentials: HTTP {response.status_code}")
        return response

    @staticmethod
    def _errors(response: httpx.Response) -> list[str]:
        try:
            body = response.json()
        except ValueError:
            return [response.text[:500]]
        details = body.get("o:errorDetails") or []
        messages = [f"{d.get('o:errorCode', '')} {d.get('detail', '')}".strip() for d in details]
        return messages or [str(body.get("title") or body)[:500]]

    def _collection(self, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every item of a filtered collection, following Oracle's offset paging (`hasMore`)."""
        offset, limit = 0, 25
        while True:
            response = self._request(
                "GET",
                f"/{self.resource}",
                params={**params, "limit": limit, "offset": offset, "onlyData": "true"},
            )
            if response.status_code != 200:
                raise RetryableError(f"Oracle look-up failed: HTTP {response.status_code}")
            body = response.json()
            yield from body.get("items", [])
            if not body.get("hasMore"):
                return
            offset += int(body.get("count") or len(body.get("items", [])) or limit)

    # --- payloads -------------------------------------------------------------------------------

    def _receivable(self, doc: InvoiceDocument) -> dict[str, Any]:
        inv, s = doc.invoice, self.settings
        customer = doc.buyer.erp_ids.get("oracle_customer_number")
        if not customer:
            raise ConnectorConfigError(f"no oracle_customer_number for {doc.buyer.org}")
        sign = -1 if doc.is_credit_note else 1  # a credit memo carries negative amounts in Oracle
        lines = []
        for n, ln in enumerate(inv["lines"], start=1):
            what = f"{ln.get('quantity', '1')} {ln.get('metric') or ''}".strip()
            lines.append(
                {
                    "LineNumber": n,
                    "Description": f"{ln['charge_id']}: {what}",
                    "Quantity": 1,
                    "UnitSellingPrice": str(sign * Decimal(str(ln["amount"]))),
                }
            )
        if _num(inv.get("tax")) and lines:
            rate = _num((doc.contract.get("tax") or {}).get("rate")) * 100
            lines[0]["receivablesInvoiceLineTaxLines"] = [
                {
                    "TaxRateCode": s.get("tax_rate_code", "VAT"),
                    "TaxRate": str(rate.normalize()),
                    "TaxAmount": str(sign * _num(inv["tax"])),
                }
            ]
        issued = str(inv.get("issued_at") or dt.date.today().isoformat())[:10]
        return {
            "TransactionNumber": ar_transaction_number(str(inv["id"])),
            "TransactionSource": s.get("transaction_source", "LedgerHub"),
            "TransactionType": "Credit Memo" if doc.is_credit_note else s.get("transaction_type", "Invoice"),
            "BusinessUnit": s.get("business_unit", "Vision Operations"),
            "BillToCustomerNumber": customer,
            "TransactionDate": issued,
            "InvoiceCurrencyCode": inv["currency"],
            "PaymentTerms": s.get("payment_terms", "30 Net"),
            "CrossReference": str(inv["id"]),
            "Comments": f"LedgerHub invoice {inv['id']} for contract {inv.get('contract_id')}, "
            f"period {inv.get('period')}",
            "receivablesInvoiceLines": lines,
            **({} if doc.is_credit_note
               else {"StructuredPaymentReference": creditor_ref.for_invoice(str(inv["id"]))}),
        }

    def _payable(self, doc: InvoiceDocument) -> dict[str, Any]:
        inv, s = doc.invoice, self.settings
        sign = -1 if doc.is_credit_note else 1
        lines = [
            {
                "LineNumber": n,
                "LineType": "Item",
                "LineAmount": str(sign * Decimal(str(ln["amount"]))),
                "Description": f"{ln['charge_id']} ({ln.get('model')}) {ln.get('quantity', '1')}",
            }
            for n, ln in enumerate(inv["lines"], start=1)
        ]
        if _num(inv.get("tax")):
            lines.append(
                {
                    "LineNumber": len(lines) + 1,
                    "LineType": "Miscellaneous",
                    "LineAmount": str(sign * _num(inv["tax"])),
                    "Description": "VAT as invoiced",
                }
            )
        return {
            "InvoiceNumber": str(inv["id"]),
            "InvoiceCurrency": inv["currency"],
            "InvoiceAmount": str(sign * _num(inv["total"])),
            "InvoiceType": "Credit memo" if doc.is_credit_note else "Standard",
            "InvoiceDate": str(inv.get("issued_at") or dt.date.today().isoformat())[:10],
            "BusinessUnit": s.get("business_unit", "Vision Operations"),
            "Supplier": doc.seller.erp_ids.get("oracle_supplier", doc.seller.name),
            "SupplierSite": doc.seller.erp_ids.get("oracle_supplier_site", s.get("supplier_site", "MAIN")),
            "Description": f"LedgerHub contract {inv.get('contract_id')}, period {inv.get('period')}",
            "invoiceLines": lines,
            **({} if doc.is_credit_note
               else {"UniqueRemittanceIdentifier": creditor_ref.for_invoice(str(inv["id"]))}),
        }

    def _key_query(self, doc: InvoiceDocument) -> dict[str, str]:
        if self.target == "provider":
            number = ar_transaction_number(doc.invoice_id)
            source = self.settings.get("transaction_source", "LedgerHub")
            return {"q": f"TransactionNumber={number};TransactionSource={source}"}
        supplier = doc.seller.erp_ids.get("oracle_supplier", doc.seller.name)
        return {"q": f"InvoiceNumber={doc.invoice_id};Supplier={supplier}"}

    def _ref(self, item: Mapping[str, Any]) -> ErpRef:
        if self.target == "provider":
            return ErpRef(
                self.name,
                str(item["CustomerTransactionId"]),
                self.target,
                {"number": str(item.get("TransactionNumber", ""))},
            )
        return ErpRef(
            self.name, str(item["InvoiceId"]), self.target, {"number": str(item.get("InvoiceNumber", ""))}
        )

    # --- the Connector interface ---------------------------------------------------------------

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        if delivery.attempt > 1:
            found = self.lookup(document, delivery)
            if found is not None:
                return found
        payload = self._receivable(document) if self.target == "provider" else self._payable(document)
        headers = {"Content-Type": ITEM_MEDIA_TYPE}
        if self.target == "customer":
            headers["Upsert-Mode"] = "true"  # AP supports create-or-update by invoice number
        response = self._request("POST", f"/{self.resource}", json=payload, headers=headers)
        if response.status_code in (200, 201):
            return self._ref(response.json())
        messages = self._errors(response)
        if any("already exists" in m.lower() or "duplicate" in m.lower() for m in messages):
            found = self.lookup(document, delivery)
            if found is not None:
                return found
        raise BusinessRejection(
            f"Oracle refused {document.invoice_id}: HTTP {response.status_code}", erp_messages=messages
        )

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        for item in self._collection(self._key_query(document)):
            return self._ref(item)
        return None

    def status(self, ref: ErpRef) -> ErpStatus:
        response = self._request("GET", f"/{self.resource}/{ref.document_id}", params={"onlyData": "true"})
        if response.status_code != 200:
            raise RetryableError(f"Oracle status read failed: HTTP {response.status_code}")
        item = response.json()
        if self.target == "provider":
            amount = _num(item.get("EnteredAmount"))
            balance = _num(item.get("InvoiceBalanceAmount"))
            paid = amount - balance
            cancelled = str(item.get("InvoiceStatus", "")).lower() in {"void", "cancelled"}
            currency = str(item.get("InvoiceCurrencyCode", ""))
        else:
            amount = _num(item.get("InvoiceAmount"))
            paid = _num(item.get("AmountPaid"))
            cancelled = bool(item.get("CanceledFlag"))
            currency = str(item.get("InvoiceCurrency", ""))
        if cancelled:
            state = "cancelled"
        elif amount and paid >= amount:
            state = "paid"
        elif paid > 0:
            state = "partially_paid"
        else:
            state = "open"
        return ErpStatus(state=state, amount=amount, paid_amount=paid, currency=currency)

    def close(self) -> None:
        self._client.close()
