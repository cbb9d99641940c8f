"""The dispatcher: claims due outbox rows and drives each to `delivered` or `dead_letter`.

One attempt of a row:
1. build the `InvoiceDocument` from the ledger (invoice, contract) and the party master data;
2. ask the target's circuit breaker; when open, postpone without using up an attempt;
3. write ahead `needs_lookup = True` (from now on a crash means "maybe sent");
4. if the previous attempt ended unclear, `lookup` first; `deliver` only when nothing was found;
5. ERP confirmed -> `posted`, then `RecordErpPosting` on the ledger as the target's org -> `delivered`.
   The chaincode treats the same target + document as a no-op, so a repeat after a crash is harmless.
Errors: one table for every connector (hub.delivery.outcomes): BusinessRejection -> dead letter at once,
with the ERP's messages; UnclearOutcome -> retry with lookup; RetryableError -> retry; `max_attempts`
reached -> dead letter with the last error. Waits are exponential with full jitter. A document that should
be signed and cannot be is dead-lettered as `document_signing_failed`, never sent unsigned.

Webhooks are rows of the registry's `webhook` connector, a message connector (connectors.base): step 1
reads the row's payload instead of the ledger, step 4 never looks up, and step 5 records nothing on the
ledger (posted is delivered). Everything else is the same code (ADR 0060).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from connectors.base import (
    MESSAGE,
    Connector,
    ConnectorConfig,
    ConnectorError,
    ConnectorRegistry,
    ErpRef,
    InvoiceDocument,
    OutboxMessage,
    Party,
    RetryableError,
    receives,
)
from connectors.base import Delivery as DeliveryRef
from hub.billing.client import ContractClient
from hub.config import Settings, reveal
from hub.delivery.backoff import Backoff
from hub.delivery.breaker import CircuitBreaker
from hub.delivery.egress import Egress, EgressPolicy, system_resolver
from hub.delivery.models import POSTED, POSTED_ELSEWHERE
from hub.delivery.outbox import Claimed, Outbox, claim_due
from hub.delivery.outcomes import classify
from hub.delivery.signing import DocumentSigningFailed, document_signing
from hub.ledger.base import ChaincodeRejected, LedgerError

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
    merged = {**base, **override}
    if name == "webhook":  # the hub's own connector: its timeout is the `webhooks` section's (ADR 0059)
        merged.setdefault("timeout", settings.webhooks.timeout_seconds)
    return merged


class Connectors:
    """One connector instance per (name, target), created on first use from the registry."""

    def __init__(self, settings: Settings, registry: ConnectorRegistry, egress: Egress | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.egress = egress or Egress(EgressPolicy.from_settings(settings))
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], Connector] = {}
        self._kinds: dict[str, bool] = {}

    def get(self, name: str, target: str) -> Connector:
        with self._lock:
            key = (name, target)
            if key not in self._instances:
                config = ConnectorConfig(name=name, target=target,  # type: ignore[arg-type]
                                         settings=connector_settings(self.settings, name, target),
                                         egress=self.egress)
                self._instances[key] = self.registry.create(config)
            return self._instances[key]

    def sends_messages(self, name: str) -> bool:
        """Whether connector `name` is a message connector (its rows carry what to send: webhooks). An
        unknown name is not: its rows fail as `connector_misconfigured` where an invoice's would."""
        if name not in self._kinds:
            try:
                self._kinds[name] = receives(self.registry.factory(name)) == MESSAGE
            except ConnectorError:
                return False
        return self._kinds[name]

    @staticmethod
    def breaker_key(name: str, connector: Connector, message: OutboxMessage | None = None) -> str:
        """One breaker per receiver of a message, else per ERP endpoint (`connector.breaker_key`)."""
        if message is not None:
            return message.receiver
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
        self.read_as = read_as or settings.org or settings.provider_org
        self.connectors = Connectors(settings, registry, Egress(EgressPolicy.from_settings(settings),
                                                                lambda: self.resolver or system_resolver))
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
        invoice = dict(ContractClient.of(self.ledger).get_invoice(item.invoice_id, as_org=self.read_as).raw)
        contract_id = str(invoice.get("contract_id") or item.contract_id)
        contract = self._contracts.get(contract_id)
        if contract is None:
            contract = dict(ContractClient.of(self.ledger).get_contract(contract_id, as_org=self.read_as).raw)
            self._contracts[contract_id] = contract
        signature, sign_xml = self._document_signing(invoice)
        return InvoiceDocument(
            invoice=invoice, contract=contract,
            seller=party(self.settings, str(invoice["provider"])),
            buyer=party(self.settings, str(invoice["customer"])),
            signature=signature, sign_xml=sign_xml,
        )

    def _document_signing(self, invoice: Mapping[str, Any]) -> tuple[dict[str, str] | None, Any]:
        """The provider's signature over the JSON invoice and an XML signing function, with its
        `documents-<org>` key in the key area; none when the key area holds no such key. Raises
        `DocumentSigningFailed` when signing is configured and fails (hub.delivery.signing, ADR 0060)."""
        return document_signing(self.settings, invoice)

    def process(self, item: Claimed) -> None:
        now = self.clock()
        message = self.connectors.sends_messages(item.connector)
        if item.state == POSTED:
            if message:
                self._delivered(item, item.attempts)
            else:
                self._record(item, item.erp_system or item.connector, str(item.erp_document_id),
                             item.attempts)
            return
        ready = self._message(item, now) if message else self._invoice(item, now)
        if ready is None:
            return
        connector, content, key = ready
        reopen = self.breaker.allow(key)
        if reopen is not None:
            self.outbox.postpone(item, reopen, now)
            return
        attempt = item.attempts + 1
        if not self.outbox.mark_sending(item, attempt, now):
            return
        ref_id = DeliveryRef(id=item.id, message_uuid=item.message_uuid, invoice_id=item.invoice_id,
                             target=item.target, attempt=attempt)  # type: ignore[arg-type]
        look_up = item.needs_lookup and not message  # a message's receiver de-duplicates a resend
        action = "lookup" if look_up else "deliver"
        started = self.clock()
        try:
            ref: ErpRef | None = connector.lookup(content, ref_id) if look_up else None  # type: ignore[arg-type]
            if ref is None:
                action = "deliver"
                ref = connector.deliver(content, ref_id)  # type: ignore[arg-type]
        except Exception as exc:
            self._failed(item, key, attempt, action, exc, started, now, message)
            return
        self.breaker.success(key)
        details = {str(k): str(v) for k, v in ref.details.items()}
        if not self.outbox.mark_posted(item, ref.system, ref.document_id, details,
                                       self._attempt(attempt, action, "ok", ref.document_id, started,
                                                     item.connector),
                                       self.clock()):
            return
        if message:
            self._delivered(item, attempt)
        else:
            self._record(item, ref.system, ref.document_id, attempt)

    def _invoice(self, item: Claimed, now: dt.datetime) -> tuple[Connector, InvoiceDocument, str] | None:
        """The document to deliver and its connector; None when the row was settled here instead."""
        try:
            document = self.document(item)
        except DocumentSigningFailed as exc:
            log.error("invoice document could not be signed: not sent (%s)", exc,
                      extra={"delivery_id": item.id, "invoice_id": item.invoice_id})
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=item.needs_lookup, attempt=None, now=now)
            return None
        except ChaincodeRejected as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=item.needs_lookup, attempt=None, now=now)
            return None
        except LedgerError as exc:
            at = now + dt.timedelta(seconds=self.backoff.delay(min(max(item.attempts, 1), 6)))
            self.outbox.retry_later(item, at, code="ledger_unavailable", message=str(exc),
                                    needs_lookup=item.needs_lookup, erp_messages=None, attempt=None, now=now)
            return None
        on_ledger = ledger_posting(document.invoice, item.target)
        if on_ledger is not None:
            # another hub (or this one, before its outbox was rebuilt) posted this target and the ledger
            # records where: sending it again would post it into this hub's ERP a second time (ADR 0031)
            message = f"the ledger records {on_ledger.get('system')} {on_ledger.get('document_id')}"
            self.outbox.mark_posted_elsewhere(
                item, on_ledger, self._attempt(item.attempts, "skip", POSTED_ELSEWHERE, message, now), now)
            log.info("already posted, as the ledger records: not sent again",
                     extra={"delivery_id": item.id, "invoice_id": item.invoice_id})
            return None
        connector = self._connector(item, now)
        if connector is None:
            return None
        return connector, document, self.connectors.breaker_key(item.connector, connector)

    def _message(self, item: Claimed, now: dt.datetime) -> tuple[Connector, OutboxMessage, str] | None:
        """A message connector's content: the row's payload, as the connector reads it."""
        connector = self._connector(item, now)
        if connector is None:
            return None
        try:
            message: OutboxMessage = connector.prepare(self.outbox.payload(item))  # type: ignore[attr-defined]
        except ConnectorError as exc:  # nothing to send (no URL): an operator must look
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=False, attempt=None, now=now)
            return None
        return connector, message, self.connectors.breaker_key(item.connector, connector, message)

    def _connector(self, item: Claimed, now: dt.datetime) -> Connector | None:
        try:
            return self.connectors.get(item.connector, item.target)
        except RetryableError as exc:  # e.g. the WSDL could not be fetched: nothing was sent
            self._later(item, item.attempts + 1, exc.code, str(exc), item.needs_lookup, None,
                        self._attempt(item.attempts + 1, "connect", exc.code, str(exc), now), attempts=True)
        except ConnectorError as exc:
            self.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=[],
                                    needs_lookup=item.needs_lookup, attempt=None, now=now)
        return None

    def _failed(self, item: Claimed, key: str, attempt: int, action: str, exc: Exception,
                started: dt.datetime, now: dt.datetime, message: bool) -> None:
        """One failed attempt, by the table in hub.delivery.outcomes."""
        verdict = classify(exc)
        rule = verdict.rule
        if rule.breaker == "success":
            self.breaker.success(key)
        elif rule.breaker == "failure":
            self.breaker.failure(key)
        if rule.level is not None:
            log.log(rule.level, "%s (%s)", rule.note, verdict.code, exc_info=exc if rule.trace else None,
                    extra={"delivery_id": item.id, "invoice_id": item.invoice_id})
        lookup = False if message else (item.needs_lookup if rule.needs_lookup is None else rule.needs_lookup)
        record = self._attempt(attempt, action, verdict.code, verdict.message, started, item.connector)
        if rule.retry:
            self._later(item, attempt, verdict.code, verdict.message, lookup, verdict.erp_messages, record)
            return
        self.outbox.dead_letter(item, code=verdict.code, message=verdict.message,
                                erp_messages=list(verdict.erp_messages or []), needs_lookup=lookup,
                                attempt=record, now=now)

    def _delivered(self, item: Claimed, attempt: int) -> None:
        """A message is delivered once its receiver took it: nothing goes on the ledger."""
        record = self._attempt(attempt, "ledger", "skipped", None, self.clock())
        self.outbox.mark_delivered(item, None, record, self.clock())

    def _record(self, item: Claimed, system: str, document_id: str, attempt: int) -> None:
        """RecordErpPosting as the target's org; `delivered` only after the commit."""
        started = self.clock()
        try:
            commit = ContractClient.of(self.ledger).record_erp_posting(
                item.invoice_id, target=item.target, system=system, document_id=document_id,
                delivery_id=item.id, as_org=item.org).commit
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
        tx_id = commit.tx_id if commit is not None else None
        self.outbox.mark_delivered(item, tx_id, self._attempt(attempt, "ledger", "ok", tx_id, started),
                                   self.clock())

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
