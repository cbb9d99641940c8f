"""State of the SAP emulator: postings, the idempotency store (first answer per MessageHeader/UUID), the
message ids in flight, document and clearing numbering, and the open/paid view of a posting. One re-entrant
lock keeps them consistent across the server's request threads."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SapState:
    """Postings, the idempotency store and document numbering; one lock keeps them consistent."""

    def __init__(self, company_codes: set[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.company_codes = company_codes
        self.postings: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.answers: dict[str, bytes] = {}  # MessageHeader/UUID -> first successful answer
        self.uuid_locks: dict[str, threading.Lock] = {}
        self.inflight: set[str] = set()  # message ids whose request is being handled right now
        self.requests: list[dict[str, Any]] = []  # path, soap_action, authenticated, body
        self._next_document = 5100000001
        self._next_clearing = 1400000001

    def uuid_lock(self, message_uuid: str) -> threading.Lock:
        with self.lock:
            return self.uuid_locks.setdefault(message_uuid, threading.Lock())

    def next_document(self) -> str:
        with self.lock:
            number = self._next_document
            self._next_document += 1
            return str(number)

    def status(self, company: str, document: str, year: str) -> dict[str, Any] | None:
        with self.lock:
            posting = self.by_key.get((company, document, year))
            return None if posting is None else status_view(posting)

    def pay(self, company: str, document: str, year: str, amount: Decimal) -> dict[str, Any] | None:
        with self.lock:
            posting = self.by_key.get((company, document, year))
            if posting is None:
                return None
            clearing = str(self._next_clearing)
            self._next_clearing += 1
            posting["payments"].append(
                {"payment_id": clearing, "amount": str(amount), "paid_at": utc_stamp()}
            )
            return status_view(posting)

    def cancel(self, company: str, document: str, year: str) -> dict[str, Any] | None:
        with self.lock:
            posting = self.by_key.get((company, document, year))
            if posting is None:
                return None
            posting["cancelled"] = True
            return status_view(posting)


def status_view(posting: dict[str, Any]) -> dict[str, Any]:
    amount = Decimal(posting["amount"])
    paid = sum((Decimal(p["amount"]) for p in posting["payments"]), Decimal(0))
    if posting.get("cancelled"):
        state = "cancelled"
    elif paid >= amount:
        state = "paid"
    elif paid > 0:
        state = "partially_paid"
    else:
        state = "open"
    return {
        "company_code": posting["company_code"],
        "accounting_document": posting["accounting_document"],
        "fiscal_year": posting["fiscal_year"],
        "state": state,
        "amount": posting["amount"],
        "paid_amount": str(paid),
        "currency": posting["currency"],
        "payments": list(posting["payments"]),
    }
