"""A minimal third-party connector: "posts" by appending to a JSON-lines file (setting `journal`), keyed by
the delivery's message UUID so a resend is idempotent, like a real ERP's idempotency key."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path

from connectors.base import ConnectorConfig, Delivery, ErpRef, ErpStatus, InvoiceDocument

_LOCK = threading.Lock()


class EchoConnector:
    def __init__(self, config: ConnectorConfig) -> None:
        self.name = config.name
        self.target = config.target
        self.journal = Path(str(config.settings["journal"]))

    def _entries(self) -> list[dict[str, str]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line]

    def deliver(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef:
        with _LOCK:
            found = self.lookup(document, delivery)
            if found is not None:
                return found
            entry = {"message_uuid": delivery.message_uuid, "invoice_id": document.invoice_id,
                     "target": delivery.target, "total": str(document.invoice["total"]),
                     "document_id": f"ECHO-{len(self._entries()) + 1:06d}"}
            with self.journal.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            return ErpRef(self.name, entry["document_id"], delivery.target)

    def lookup(self, document: InvoiceDocument, delivery: Delivery) -> ErpRef | None:
        for entry in self._entries():
            if entry["message_uuid"] == delivery.message_uuid:
                return ErpRef(self.name, entry["document_id"], delivery.target)
        return None

    def status(self, ref: ErpRef) -> ErpStatus:
        return ErpStatus(state="open", amount=Decimal(0), paid_amount=Decimal(0), currency="EUR")

    def close(self) -> None:
        return None
