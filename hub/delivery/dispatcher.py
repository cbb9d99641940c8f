"""The dispatcher: claims due outbox rows and drives each to `delivered` or `dead_letter`.

One attempt of a row:
1. build the `InvoiceDocument` from the ledger (invoice, contract) and the party master data;
2. ask the target's circuit breaker; when open, postpone without using up an attempt;
3. write ahead `needs_lookup = True` (from now on a crash means "maybe sent");
4. if the previous attempt ended unclear, `lookup` first; `deliver` only when nothing was found;
5. ERP confirmed -> `posted`, then `RecordErpPosting` on the ledger as the target's org -> `delivered`.
   The chaincode treats the same target + document as a no-op, so a repeat after a crash is harmless.
Errors: BusinessRejection -> dead letter at once, with the ERP's messages; UnclearOutcome -> retry with
lookup; RetryableError -> retry; `max_attempts` reached -> dead letter with the last error. Waits are
exponential with full jitter.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from connectors.base import (
    BusinessRejection,
    Connector,
    ConnectorConfig,
    ConnectorConfigError,
    ConnectorError,
    ConnectorRegistry,
    ErpRef,
    InvoiceDocument,
    Party,
    RetryableError,
    UnclearOutcome,
)
from connectors.base import Delivery as DeliveryRef
from hub.config import Settings, reveal
from hub.delivery import webhooks
from hub.delivery.backoff import Backoff
from hub.delivery.breaker import CircuitBreaker
from hub.delivery.models import POSTED, POSTED_ELSEWHERE
from hub.delivery.outbox import Claimed, Outbox, claim_due
from hub.ledger.base import ChaincodeRejected, LedgerError

WEBHOOK = "webhook"
log = logging.getLogger("ledgerhub.delivery")
Clock = Callable[[], dt.datetime]
PARTY_FIELDS = ("name", "country", "vat_id", "street", "city", "postal_code", "email", "erp_ids")


@dataclass
class DeliveryOptions:
    concurrency: int = 4
    batch: int = 16
    claim_seconds: float = 120.0  # lease of a claim; longer than lookup + deliver + ledger write
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    breaker_threshold: int = 5
    breaker_open_seconds: float = 30.0
    poll_seconds: float = 1.0
    reconcile_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryOptions:
        """`Settings.delivery` (LEDGERHUB_DELIVERY, or `"delivery"` in the settings file)."""
        return cls(**settings.delivery.model_dump())


def ledger_posting(invoice: Mapping[str, Any], target: str) -> dict[str, Any] | None:
    """The ERP reference the ledger records for `target` of this invoice, if any (`RecordErpPosting`)."""
    for ref in invoice.get("erp_refs") or ():
        if isinstance(ref, Mapping) and ref.get("target") == target:
            return dict(ref)
    return None


def party(settings: Settings, org: str) -> Party:
    data = dict(settings.parties.get(org) or {})
    fields = {k: data[k] for k in PARTY_FIELDS if k in data}
    fields.setdefault("name", org)
    return Party(org=org, **fields)


def connector_settings(settings: Settings, name: str, target: str) -> dict[str, Any]:
    """`Settings.connectors[name]`, with an optional per-target override block ("provider"/"customer")."""
    base = reveal(dict(settings.connectors.get(name) or {}))
    override = base.pop(target, None) or {}
    base.pop("provider" if target == "customer" else "customer", None)
    return {**base, **override}


class Connectors:
    """One connector instance per (name, target), created on first use from the registry."""

    def __init__(self, settings: Settings, registry: ConnectorRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], Connector] = {}

    def get(self, name: str, target: str) -> Connector:
        with self._lock:
            key = (name, target)
            if key not in self._instances:
                config = ConnectorConfig(name=name, target=target,  # type: ignore[arg-type]
                                         settings=connector_settings(self.settings, name, target))
                self._instances[key] = self.registry.create(config)
            return self._instances[key]

    @staticmethod
    def breaker_key(name: str, connector: Connector) -> str:
        return str(getattr(connector, "breaker_key", None) or name)

    def close(self) -> None:
        with self._lock:
            for instance in self._instances.values():
                try:
                    instance.close()
                except Exception:
                    log.warning("closing connector failed", exc_info=True)
            self._instances.clear()


class Dispatcher:
    def __init__(self, ledger: Any, db: sessionmaker[Session], settings: Settings,
                 registry: ConnectorRegistry, *, options: DeliveryOptions | None = None,
                 clock: Clock | None = None, worker: str = "dispatcher", read_as: str | None = None,
                 backoff: Backoff | None = None, breaker: CircuitBreaker | None = None) -> None:
        self.ledger = ledger
        self.db = db
        self.settings = settings
        self.options = options or DeliveryOptions()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.worker = worker
        self.read_as = read_as or settings.provider_org
        self.connectors = Connectors(settings, registry)
        self.outbox = Outbox(db)
        self.backoff = backoff or Backoff(self.options.backoff_base, self.options.backoff_cap)
        self.breaker = breaker or CircuitBreaker(self.options.breaker_threshold,
                                                 self.options.breaker_open_seconds, self.clock)
        self._pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="delivery")
        self.metrics: Any = None  # hub.delivery.metrics.DeliveryMetrics, when the app has a registry
        self.resolver: Any = None  # webhook hosts (hub.delivery.egress.Resolver); None: the system's
        self._contracts: dict[str, Mapping[str, Any]] = {}

    # --- the loop ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim due rows and process them on the pool; returns how many were processed."""
        claimed = claim_due(self.db, self.worker, self.options.batch,
                            dt.timedelta(seconds=self.options.claim_seconds), self.clock())
        if not claimed:
            return 0
        for future in [self._pool.submit(self._process_safely, item) for item in claimed]:
            future.result()
        return len(claimed)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.connectors.close()

    def _process_safely(self, item: Claimed) -> None:
        try:
            self.process(item)
        except Exception:
            # never let one row kill the loop; its claim expires and it is tried again
            log.exception("delivery failed unexpectedly", extra={"delivery_id": item.id})

    # --- one row ----------------------------------------------------------------------------------

    def document(self, item: Claimed) -> InvoiceDocument:
        invoice = json.loads(self.ledger.evaluate("GetInvoice", [json.dumps({"id": item.invoice_id})],
                                                  as_org=self.read_as))
        contract_id = str(invoice.get("contract_id") or item.contract_id)
        contract = self._contracts.get(contract_id)
        if contract is None:
            contract = json.loads(self.ledger.evaluate("GetContract", [json.dumps({"id": contract_id})],
                                                       as_org=self.read_as))
            self._contracts[contract_id] = contract
        signature, sign_xml = self._document_signing(invoice)
        return InvoiceDocument(
            invoice=invoice, contract=contract,
            seller=party(self.settings, str(invoice["provider"])),
            buyer=party(self.settings, str(invoice["customer"])),
            signature=signature, sign_xml=sign_xml,
        )

    def _document_signing(self, invoice: Mapping[str, Any]) -> tuple[dict[str, str] | None, Any]:
        """The provider's signature over the JSON invoice and an XML signing function, both with its
        `documents-<org>` key in the key area (an HSM with LEDGERHUB_SIGNER=pkcs11); none without one."""
        try:
            from hub.keys import build_key_manager
            from hub.keys.documents import sign_invoice_json, sign_xml

            manager = build_key_manager(self.settings)
            signer = manager.signer(f"documents-{invoice['provider']}", "invoice-document")
            jws = sign_invoice_json(invoice, signer)
        except Exception as exc:  # no key area, no document key: deliver unsigned, say so once per doc
            log.info("invoice document not signed: %s", exc, extra={"invoice_id": invoice.get("id")})
            return None, None
        return {"jws": jws, "kid": signer.key_id}, lambda xml: sign_xml(xml, signer)

    def process(self, item: Claimed) -> None:
        now = self.clock()
        if item.state == POSTED:
            self._record(item, item.erp_system or item.connector, str(item.erp_document_id), item.attempts)
            return
        if item.connector == WEBHOOK:
            webhooks.deliver(self, item, now)  # same engine; the payload is in the row, nothing on the ledger
            return
        try:
            document = self.document(item)
        except ChaincodeRejected as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=item.needs_lookup, attempt=None, now=now)
            return
        except LedgerError as exc:
            at = now + dt.timedelta(seconds=self.backoff.delay(min(max(item.attempts, 1), 6)))
            self.outbox.retry_later(item, at, code="ledger_unavailable", message=str(exc),
                                    needs_lookup=item.needs_lookup, erp_messages=None, attempt=None, now=now)
            return
        on_ledger = ledger_posting(document.invoice, item.target)
        if on_ledger is not None:
            # another hub (or this one, before its outbox was rebuilt) posted this target and the ledger
            # records where: sending it again would post it into this hub's ERP a second time (ADR 0031)
            message = f"the ledger records {on_ledger.get('system')} {on_ledger.get('document_id')}"
            self.outbox.mark_posted_elsewhere(
                item, on_ledger, self._attempt(item.attempts, "skip", POSTED_ELSEWHERE, message, now), now)
            log.info("already posted, as the ledger records: not sent again",
                     extra={"delivery_id": item.id, "invoice_id": item.invoice_id})
            return
        try:
            connector = self.connectors.get(item.connector, item.target)
        except RetryableError as exc:  # e.g. the WSDL could not be fetched: nothing was sent
            self._later(item, item.attempts + 1, exc.code, str(exc), item.needs_lookup, None,
                        self._attempt(item.attempts + 1, "connect", exc.code, str(exc), now), attempts=True)
            return
        except ConnectorError as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=item.needs_lookup, attempt=None, now=now)
            return
        key = self.connectors.breaker_key(item.connector, connector)
        reopen = self.breaker.allow(key)
        if reopen is not None:
            self.outbox.postpone(item, reopen, now)
            return
        attempt = item.attempts + 1
        if not self.outbox.mark_sending(item, attempt, now):
            return
        ref_id = DeliveryRef(id=item.id, message_uuid=item.message_uuid, invoice_id=item.invoice_id,
                             target=item.target, attempt=attempt)  # type: ignore[arg-type]
        action = "lookup" if item.needs_lookup else "deliver"
        record = functools.partial(self._attempt, connector=item.connector)
        started = self.clock()
        try:
            ref: ErpRef | None = connector.lookup(document, ref_id) if item.needs_lookup else None
            if ref is None:
                action = "deliver"
                ref = connector.deliver(document, ref_id)
        except BusinessRejection as exc:
            self.breaker.success(key)
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=exc.erp_messages,
                                    needs_lookup=False, attempt=record(attempt, action, exc.code,
                                                                              str(exc), started), now=now)
            log.warning("delivery rejected by the ERP", extra={"delivery_id": item.id})
            return
        except ConnectorConfigError as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=exc.erp_messages,
                                    needs_lookup=item.needs_lookup,
                                    attempt=record(attempt, action, exc.code, str(exc), started),
                                    now=now)
            return
        except (UnclearOutcome, RetryableError) as exc:
            self.breaker.failure(key)
            # an unclear outcome means "maybe posted"; a plain retryable one means "not this time", but an
            # earlier unclear attempt still needs its lookup
            lookup = True if isinstance(exc, UnclearOutcome) else item.needs_lookup
            self._later(item, attempt, exc.code, str(exc), lookup, exc.erp_messages,
                        record(attempt, action, exc.code, str(exc), started))
            return
        except ConnectorError as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=exc.erp_messages,
                                    needs_lookup=True,
                                    attempt=record(attempt, action, exc.code, str(exc), started),
                                    now=now)
            return
        except Exception as exc:
            self.breaker.failure(key)
            log.exception("connector raised", extra={"delivery_id": item.id})
            self._later(item, attempt, "connector_crashed", repr(exc), True, None,
                        record(attempt, action, "connector_crashed", repr(exc), started))
            return
        self.breaker.success(key)
        details = {str(k): str(v) for k, v in ref.details.items()}
        if not self.outbox.mark_posted(item, ref.system, ref.document_id, details,
                                       record(attempt, action, "ok", ref.document_id, started),
                                       self.clock()):
            return
        self._record(item, ref.system, ref.document_id, attempt)

    def _record(self, item: Claimed, system: str, document_id: str, attempt: int) -> None:
        """RecordErpPosting as the target's org; `delivered` only after the commit."""
        started = self.clock()
        body = {"invoice_id": item.invoice_id, "target": item.target, "system": system,
                "document_id": document_id, "delivery_id": item.id}
        try:
            commit = self.ledger.submit("RecordErpPosting", [json.dumps(body)], as_org=item.org)
        except ChaincodeRejected as exc:
            if exc.retryable:  # e.g. tx_timestamp_skew: the peer's clock, not the posting; try again later
                self._ledger_later(item, attempt, exc.code, str(exc), started)
                return
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=False,
                                    attempt=self._attempt(attempt, "ledger", exc.code, str(exc), started),
                                    now=self.clock())
            return
        except LedgerError as exc:
            self._ledger_later(item, attempt, "ledger_unavailable", str(exc), started)
            return
        self.outbox.mark_delivered(item, getattr(commit, "tx_id", None),
                                   self._attempt(attempt, "ledger", "ok", getattr(commit, "tx_id", None),
                                                 started), self.clock())

    def _ledger_later(self, item: Claimed, attempt: int, code: str, message: str,
                      started: dt.datetime) -> None:
        """The ERP has it; keep trying to record it, without spending the ERP attempt budget."""
        at = self.clock() + dt.timedelta(seconds=self.backoff.delay(min(max(attempt, 1), 6)))
        record = self._attempt(attempt, "ledger", code, message, started)
        self.outbox.retry_later(item, at, code=code, message=message, needs_lookup=False, erp_messages=None,
                                now=self.clock(), attempt=record)

    def _later(self, item: Claimed, attempt: int, code: str, message: str, needs_lookup: bool,
               erp_messages: list[str] | None, record: dict[str, Any] | None, attempts: bool = False) -> None:
        """Retry after a backoff, or dead-letter when the attempt budget is spent. `attempts=True` stores
        the attempt count here (when no write-ahead did)."""
        now = self.clock()
        count = attempt if attempts else None
        if attempt >= self.options.max_attempts:
            self.outbox.dead_letter(item, code=code, message=f"gave up after {attempt} attempts: {message}",
                                    erp_messages=list(erp_messages or []), needs_lookup=needs_lookup,
                                    attempt=record, now=now, attempts=count)
            return
        at = now + dt.timedelta(seconds=self.backoff.delay(attempt))
        log.warning("delivery attempt %d failed (%s), next try at %s", attempt, code, at.isoformat(),
                    extra={"delivery_id": item.id, "invoice_id": item.invoice_id})
        self.outbox.retry_later(item, at, code=code, message=message, needs_lookup=needs_lookup,
                                erp_messages=erp_messages, attempt=record, now=now, attempts=count)

    def _attempt(self, attempt: int, action: str, outcome: str, message: str | None,
                 started: dt.datetime, connector: str | None = None) -> dict[str, Any]:
        finished = self.clock()
        if self.metrics is not None and action in ("deliver", "lookup"):
            self.metrics.observe(connector or "-", action, outcome, (finished - started).total_seconds())
        return {"attempt": attempt, "action": action, "outcome": outcome, "message": message,
                "started_at": started, "finished_at": finished}
