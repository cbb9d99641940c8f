"""Usage ingestion: validate at the edge (shape, the device's owner, the signature), answer replays from the
idempotency record, batch the rest.

Why this shape:
* Forgeries and malformed messages are refused here, before they cost a ledger transaction; the chaincode
  checks the signature again, so the edge check is an optimisation, never the only guard. Edge refusals are
  not recorded: a forged message must not be able to claim a genuine device's message id.
* Concurrent messages share one `RecordUsage` transaction (an adaptive batcher): a single worker drains
  whatever is waiting, up to `batch_max_messages`, and submits one transaction per (org, contract) in it.
  Idle, a message is one transaction of its own (no added latency); under load, batches grow while the
  previous transaction commits; up to `ingest_pipeline_depth` drained batches are in flight at once, a
  message sharing a reading with one in flight waiting for it (hub/ingest_pipeline.py, ADR 0039). One
  contract per transaction keeps a contract's proof bundle free of
  other contracts' messages (ADR 0028); the chaincode refuses mixed transactions (`mixed_contracts`).
* The idempotency record is written only after the ledger committed. A failure before that (ledger
  down, unknown commit status) leaves nothing behind, so the device can retry and nothing is lost; a
  message that did commit is answered from the record on every replay, so nothing is written twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chaincode.errors import ERROR_STATUS, ChaincodeError
from hub.billing.answers import AnswerShapeError, UsageRecorded
from hub.billing.visibility import may_see_asset
from hub.errors import Conflict, HubError, InvalidInput, NotFound, Unavailable, from_chaincode
from hub.ingest_capacity import BoundedFront, Capacity
from hub.ingest_message import (
    Reading,
    UsageMessage,
    canonical,
    signature_ok,
    signed_bytes,
    verify_message_signature,
)
from hub.ingest_pipeline import Pipeline
from hub.ingest_recovery import Answer, earlier_answer
from hub.ledger.base import (
    ChaincodeRejected,
    Commit,
    CommitStatusUnknown,
    LedgerError,
    TransactionInvalid,
    TransactionTooLarge,
)
from hub.metrics import Metrics
from hub.principal import Principal
from hub.services import LedgerGateway, dumps
from hub.store.models import IdempotencyRecord, utcnow

log = logging.getLogger("ledgerhub.ingest")

# the message model and its signature check live in hub/ingest_message.py; these names stay importable here
__all__ = ["Answer", "Ingestor", "Reading", "UsageMessage", "canonical", "verify_message_signature"]
MAX_CONFLICT_RETRIES = 3
# refusals that may mean "this message is already on the ledger" (see Ingestor._earlier_answer)
SELF_DUPLICATE_CODES = {"duplicate_reading", "message_conflict"}
# refusals of the whole transaction that no message caused: every message of the batch gets the answer
# (not recorded, so a retry with the same message_id is judged again), without splitting the batch
WHOLE_TX_REFUSALS = {"tx_timestamp_skew"}


def refused(error: HubError) -> Answer:
    """A refusal as ingestion records it and the usage route sends it: its status and problem document."""
    return error.status, error.problem()


@dataclass
class _Pending:
    key: tuple[str, str]
    raw: dict[str, Any]
    digest: str
    as_org: str
    contract_id: str | None = None  # the device's contract as this hub last read it (batching key)
    future: Future[Answer] = field(default_factory=Future)
    size: int = 0  # the signed bytes (a batch is capped by them too: ADR 0069)


@dataclass(frozen=True)
class _Asset:
    provider: str
    public_key: str  # PEM, as registered
    contract_id: str | None = None  # may change (a contract accepted or ended): re-read on mixed_contracts


class Ingestor:
    """Owns the queue, the worker thread and the in-flight map of one hub process."""

    def __init__(
        self, gateway: LedgerGateway, db: sessionmaker[Session], metrics: Metrics, *, max_batch: int,
        max_readings: int, capacity: Capacity | None = None, pipeline_depth: int = 1,
        batch_max_readings: int | None = None, batch_max_bytes: int | None = None,
    ) -> None:
        self.gateway = gateway
        self.db = db
        self.metrics = metrics
        self.max_batch = max(1, max_batch)
        self.max_readings = max_readings
        self.capacity = capacity or Capacity()
        self.front = BoundedFront(self.capacity, self._admit, metrics)
        # bounded by max_pending: _inflight holds exactly the queued and committing messages
        self._queue: queue.Queue[Any] = queue.Queue()
        self.pipeline = Pipeline(
            self._queue, self._run_batch, depth=pipeline_depth, max_batch=self.max_batch,
            max_readings=batch_max_readings, max_bytes=batch_max_bytes,
        )
        self._inflight: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()
        self._assets: dict[str, _Asset] = {}
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.front.start()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledgerhub-ingest", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            leftovers = list(self._inflight.values())
            self._inflight.clear()
        for pending in leftovers:
            if not pending.future.done():
                pending.future.set_result(refused(Unavailable("shutting_down", "Hub is shutting down")))
        self.front.stop()

    # --- the edge -------------------------------------------------------------------------------

    async def handle(self, raw: Any, principal: Principal, *, wait: bool = True) -> Answer:
        """Answer one usage message: (status, body), within ingestion's own bounds (`BoundedFront`)."""
        return await self.front.handle(raw, principal, wait=wait)

    def _admit(self, raw: Any, principal: Principal) -> Answer | _Pending:
        """The edge: an answer now (refusal, replay, saturation), or the pending message to wait for."""
        if not isinstance(raw, dict):
            return refused(HubError("invalid_request", "Invalid request", "the body must be a JSON object",
                                  status=422))
        try:
            message = UsageMessage.model_validate(raw)
        except ValidationError as exc:
            errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            return refused(HubError("invalid_request", "Invalid request", "the usage message does not match "
                                  "the schema", status=422, errors=errors))
        reading_ids = [r.id for r in message.readings]
        if len(reading_ids) > self.max_readings:
            return refused(HubError(
                "too_many_readings", "Too many readings in one message",
                f"{len(reading_ids)} readings; at most {self.max_readings} per message", status=413,
            ))
        repeated = sorted(r for r, n in Counter(reading_ids).items() if n > 1)
        if repeated:
            return self._edge_reject(message, InvalidInput(
                "invalid_argument", "Repeated reading id", "a reading id appears twice",
                message_id=message.message_id, reading_ids=repeated,
            ))
        key = (message.device_id, message.message_id)
        # the digest leaves the signature out: ECDSA signatures are randomised, so a device that re-signs
        # the same message for a retry is still sending the same message
        signed = signed_bytes(raw)  # what the device signed, and what makes two messages the same
        digest = hashlib.sha256(signed).hexdigest()  # = hub.ingest_message.digest(raw), encoded once
        # ownership and signature before the idempotency record: a replay is answered only to the org that
        # owns the device and only for a message the device really signed; otherwise another org's device
        # token could probe which message ids exist, and a junk signature could fetch a stored answer
        asset = self._asset(message.device_id, principal)
        if not signature_ok(raw.get("signature"), signed, asset.public_key):
            return self._edge_reject(message, InvalidInput(
                "bad_signature", "Bad signature",
                "the signature does not verify with the device's registered public key",
                message_id=message.message_id, reading_ids=reading_ids,
            ))
        stored = self._stored(key, digest)
        if stored is not None:
            self.metrics.messages.labels("replay").inc()
            return stored
        with self._lock:
            pending = self._inflight.get(key)
            if pending is None:
                if len(self._inflight) >= self.capacity.max_pending:
                    return self.front.saturated("too many messages are waiting for the ledger")
                # a device bound to no contract (a shared asset, routed by its bookings: ADR 0049) gets a
                # transaction of its own per message, since its messages may belong to different contracts
                group = asset.contract_id or f"unbound:{key[0]}:{key[1]}"
                pending = _Pending(key, raw, digest, principal.org, group, size=len(signed))
                self._inflight[key] = pending
                self._queue.put(pending)
                self.metrics.queue_depth.set(self._queue.qsize())
            elif pending.digest != digest:
                return _conflict(message.message_id)
        return pending

    def _edge_reject(self, message: UsageMessage, error: HubError) -> Answer:
        self.metrics.readings_rejected.labels(error.code).inc(len(message.readings))
        self.metrics.messages.labels("rejected").inc()
        return refused(error)

    def _asset(self, device_id: str, principal: Principal) -> _Asset:
        asset = self._assets.get(device_id)
        if asset is None:
            try:
                record = self.gateway.client.get_asset(device_id, as_org=principal.org)
            except ChaincodeRejected as exc:
                if exc.code in {"unknown_asset", "forbidden"}:
                    raise _unknown_asset(device_id) from None
                raise
            asset = _Asset(record.provider, record.public_key, record.contract_id)
            self._assets[device_id] = asset  # an asset record never changes its key or provider
        if not may_see_asset(principal, asset.provider):
            raise _unknown_asset(device_id)  # another org's device: answer as if unknown
        return asset

    def _stored(self, key: tuple[str, str], digest: str) -> Answer | None:
        # a Core statement with bound parameters (compiled once, cached) on a plain connection: about a
        # fifth of an ORM query's CPU, and it runs once per request
        params = {"device_id": key[0], "message_id": key[1]}
        engine = self.db.kw.get("bind")
        if engine is not None:
            with engine.connect() as conn:
                row = conn.execute(_LOOKUP, params).first()
        else:
            with self.db() as session:
                row = session.execute(_LOOKUP, params).first()
        if row is None:
            return None
        request_digest, status_code, body = row
        if request_digest != digest:
            return _conflict(key[1])
        return status_code, json.loads(body)

    # --- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        self.pipeline.run()  # drains the queue; several batches in flight at once (ADR 0039)

    def _run_batch(self, batch: list[_Pending]) -> None:
        self.metrics.queue_depth.set(self._queue.qsize())
        groups: dict[tuple[str, str | None], list[_Pending]] = {}
        for pending in batch:
            groups.setdefault((pending.as_org, pending.contract_id), []).append(pending)
        for (org, _contract), group in groups.items():  # one transaction per contract (ADR 0028)
            try:
                self._process(group, org)
            except Exception:  # the worker must survive anything; callers get a 500 problem
                log.exception("usage batch failed")
                failed = refused(_internal())
                self._finish(group, {p.key: failed for p in group})

    def _process(self, batch: list[_Pending], org: str) -> None:
        answers: dict[tuple[str, str], Answer] = {}
        messages = [p.raw for p in batch]
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                recorded = self.gateway.client.record_usage(messages, as_org=org)
                break
            except TransactionInvalid as exc:
                if len(batch) > 1 and isinstance(exc, TransactionTooLarge):
                    # the orderer refused the transaction for its size (a cap set too high for this
                    # channel): no message caused it, so halve the batch until each half fits (ADR 0069)
                    log.warning("usage transaction of %d messages too large for the orderer, splitting: %s",
                                len(batch), exc.status)
                    half = len(batch) // 2
                    self._process(batch[:half], org)
                    self._process(batch[half:], org)
                    return
                if attempt == MAX_CONFLICT_RETRIES:
                    conflict = refused(Unavailable("ledger_conflict", "Ledger conflict, retry"))
                    self._finish(batch, {p.key: conflict for p in batch})
                    return
            except ChaincodeRejected as exc:
                if exc.code in WHOLE_TX_REFUSALS:  # about the transaction, not a message: no split
                    self._finish(batch, {p.key: _rejection(exc.error, p) for p in batch})
                    return
                if exc.code == "mixed_contracts":  # a device's contract changed since it was cached
                    for pending in batch:
                        self._assets.pop(pending.key[0], None)
                if len(batch) > 1:  # one message spoiled the whole transaction: judge each on its own
                    for pending in batch:
                        self._process([pending], org)
                    return
                self._count_rejection(batch[0], exc.error)
                self._finish(batch, {batch[0].key: _rejection(exc.error, batch[0])})
                return
            except CommitStatusUnknown as exc:
                resolved = self._resolve_unknown(exc.tx_id)
                if resolved is None:
                    answers = {
                        p.key: refused(Unavailable("commit_status_unknown", "Commit status unknown",
                                              "retry with the same message_id",
                                              retry_after=self.capacity.retry_after_seconds)) for p in batch
                    }
                    self._finish(batch, answers)
                    return
                recorded = resolved
                break
            except LedgerError as exc:
                unavailable = refused(Unavailable("ledger_unavailable", "Ledger unavailable", str(exc),
                                                  retry_after=self.capacity.retry_after_seconds))
                answers = {p.key: unavailable for p in batch}
                self._finish(batch, answers)
                return
        self.metrics.batch_size.observe(len(batch))
        # a message is (device id, message id): two devices may use the same message id in one batch
        commit = recorded.commit
        assert commit is not None  # a transaction's answer always says where it landed
        results = {(r.device_id, r.message_id): r for r in recorded.results}
        records = []
        for pending in batch:
            result = results.get(pending.key)
            if result is None:
                answers[pending.key] = refused(_internal("No result for message"))
                continue
            if result.status == "accepted":
                self.metrics.readings_accepted.inc(result.accepted)
                self.metrics.readings_duplicate.inc(len(result.duplicates))
                self.metrics.messages.labels("accepted").inc()
                answer: Answer = (202, {
                    "accepted": result.accepted, "duplicates": list(result.duplicates),
                    "tx_id": commit.tx_id, "block": commit.block,
                })
            else:
                err = result.error or {}
                details = {k: v for k, v in err.items() if k not in {"code", "message"}}
                code = err.get("code", "invalid_argument")
                error = ChaincodeError(code if code in ERROR_STATUS else "invalid_argument",
                                       str(err.get("message", code)), **details)
                recovered = self._earlier_answer(pending, org) if code in SELF_DUPLICATE_CODES else None
                if recovered is not None:
                    self.metrics.messages.labels("recovered").inc()
                    answer = recovered
                else:
                    self._count_rejection(pending, error)
                    answer = _rejection(error, pending, tx_id=commit.tx_id, block=commit.block)
            answers[pending.key] = answer
            records.append((pending, answer, commit.tx_id))
        self._record(records, answers)
        self._finish(batch, answers)

    def _earlier_answer(self, pending: _Pending, org: str) -> Answer | None:
        return earlier_answer(self.gateway, pending.key, pending.raw, pending.digest, org)

    def _resolve_unknown(self, tx_id: str) -> UsageRecorded | None:
        """The answer of a `RecordUsage` whose commit status was unknown, read back from where it landed."""
        try:
            tx = self.gateway.ledger.tx(tx_id)
        except LedgerError:  # LedgerNotFound (the tx never landed) or the ledger unreachable: not resolved
            return None
        if tx.status != "VALID":
            return None
        commit = Commit(tx.tx_id, tx.block, tx.status, tx.response)
        if not tx.response:  # no answer: every message is answered "no result" (500), as before
            return UsageRecorded(raw={}, commit=commit, results=(), accepted=0, tx_id=tx.tx_id)
        try:
            return UsageRecorded.from_raw(json.loads(tx.response), commit)
        except (ValueError, AnswerShapeError):
            return None

    def _count_rejection(self, pending: _Pending, error: ChaincodeError) -> None:
        self.metrics.readings_rejected.labels(error.code).inc(len(pending.raw.get("readings", [])))
        self.metrics.messages.labels("rejected").inc()

    def _record(self, records: list[tuple[_Pending, Answer, str]],
                answers: dict[tuple[str, str], Answer]) -> None:
        """Persist the first answers; a concurrent writer (another hub replica) may have won: then its
        answer is the first one and is what this caller gets too.

        The whole batch goes in one multi-row INSERT and one commit (one fsync), not one transaction per
        message; only if that collides with another writer is it redone message by message."""
        if not records:
            return
        rows = [
            {"device_id": p.key[0], "message_id": p.key[1], "request_digest": p.digest, "status_code": status,
             "body": dumps(body), "tx_id": tx_id, "created_at": utcnow()}
            for p, (status, body), tx_id in records
        ]
        try:
            with self.db.begin() as session:
                session.execute(insert(IdempotencyRecord), rows)
            return
        except IntegrityError:
            pass
        for pending, (status, body), tx_id in records:
            try:
                with self.db.begin() as session:
                    session.add(IdempotencyRecord(
                        device_id=pending.key[0], message_id=pending.key[1], request_digest=pending.digest,
                        status_code=status, body=dumps(body), tx_id=tx_id,
                    ))
            except IntegrityError:
                existing = self._stored(pending.key, pending.digest)
                if existing is not None:
                    answers[pending.key] = existing

    def _finish(self, batch: list[_Pending], answers: dict[tuple[str, str], Answer]) -> None:
        with self._lock:
            for pending in batch:
                self._inflight.pop(pending.key, None)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(
                    answers.get(pending.key, refused(_internal()))
                )


def _rejection(error: ChaincodeError, pending: _Pending, **extra: Any) -> Answer:
    refusal = from_chaincode(error)
    body = refusal.problem()
    body.setdefault("reading_ids", [])
    body["message_id"] = pending.key[1]
    body.update({k: v for k, v in extra.items() if v is not None})
    return refusal.status, body


_LOOKUP = select(
    IdempotencyRecord.request_digest, IdempotencyRecord.status_code, IdempotencyRecord.body
).where(
    IdempotencyRecord.device_id == bindparam("device_id"),
    IdempotencyRecord.message_id == bindparam("message_id"),
)


def _conflict(message_id: str) -> Answer:
    return refused(Conflict(
        "message_id_conflict", "Message id already used",
        f"message_id {message_id!r} was already used for a different message", message_id=message_id,
    ))


def _internal(title: str = "Internal error") -> HubError:
    return HubError("internal_error", title, status=500)


def _unknown_asset(device_id: str) -> NotFound:
    return NotFound("unknown_asset", "Unknown asset", f"no asset {device_id!r} for this device's org")
