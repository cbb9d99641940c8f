"""`DeviceClient`: add readings to the local queue, send them to `POST /v1/usage` in signed batches.

Answers and what the client does with them (ADR 0052, docs/device-sdk.md):

- 202: every reading of the message is on the ledger (`delivered`, with tx id and block), or was already
  (`duplicate`). 409 `duplicate_reading` (only duplicates): all `duplicate`.
- Any other 4xx that names readings (`readings` / `reading_ids`, or 422 errors that point into `readings`):
  those readings are `refused` with the hub's code and detail and never sent again; the rest of the message
  goes back to the queue and leaves in a new message (the hub wrote nothing of the refused message).
  A 4xx that names no reading refuses every reading of the message.
- 401, 403, 404 `unknown_asset` and 400 `bad_signature` are the device's configuration (token, asset, key),
  not its readings: `DeviceConfigError` is raised and the message stays queued, unchanged, for when the
  token, the asset or the key is fixed.
- 413: the batch was too large; its readings go back to the queue and batches get smaller.
- 408, 425, 429, 5xx and network failures: the same message (same id, same readings) is sent again after a
  backoff (exponential with jitter, capped), or after `Retry-After` when the hub sends one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx

from ledgerhub.device.queue import Outcome, QueuedReading, ReadingQueue
from ledgerhub.device.signing import MessageSigner, sign_message

log = logging.getLogger("ledgerhub.device")
RETRYABLE = {408, 425, 429}
# the device itself, not its readings: its asset is not registered, or its key is not the registered one
CONFIG_CODES = {"unknown_asset", "bad_signature"}
MESSAGE_ID_CODES = {"message_id_conflict", "message_conflict"}


class DeviceConfigError(RuntimeError):
    """The hub refuses the device itself (token, role, unregistered asset); nothing was dropped."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass
class FlushReport:
    messages: int = 0  # final answers received
    delivered: int = 0
    duplicates: int = 0
    refused: int = 0
    retries: int = 0  # sends that got no final answer and were repeated
    pending: int = 0  # readings still in the queue when flush returned
    waited: float = 0.0  # seconds spent in backoff
    codes: dict[str, int] = field(default_factory=dict)  # refusal codes seen


class Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _decimal_text(value: Any, what: str) -> str:
    if isinstance(value, (bool, float)):
        raise TypeError(f"{what} must be a decimal string, Decimal or int (not {type(value).__name__})")
    text = value if isinstance(value, str) else format(Decimal(value), "f")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a decimal number") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{what} {value!r} must be a finite, non-negative decimal")
    return text


def _timestamp_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        parsed, text = value, value.isoformat()
    elif isinstance(value, str):
        try:
            parsed, text = dt.datetime.fromisoformat(value), value
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    else:
        raise TypeError("timestamp must be a timezone-aware datetime or an ISO 8601 string")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return text


def make_reading(reading_id: str, metric: str, quantity: Any, timestamp: Any,
                 unit_price: Any = None) -> dict[str, Any]:
    """A reading as API.md writes it, checked here so that a typo fails at `add`, not at the hub."""
    if not isinstance(reading_id, str) or not reading_id or len(reading_id) > 200:
        raise ValueError("a reading id is a non-empty string of at most 200 characters")
    if not isinstance(metric, str) or not metric:
        raise ValueError("metric must be a non-empty string")
    reading = {"id": reading_id, "metric": metric, "quantity": _decimal_text(quantity, "quantity"),
               "timestamp": _timestamp_text(timestamp)}
    if unit_price is not None:
        reading["unit_price"] = _decimal_text(unit_price, "unit_price")
    return reading


class DeviceClient:
    """One device's sender. Thread-safe for `add`; `flush` is meant to run in one thread at a time."""

    def __init__(self, hub_url: str | None, *, device_id: str, token: str, signer: MessageSigner,
                 queue_path: str | Path, batch_size: int = 200, http: httpx.Client | None = None,
                 timeout: float = 30.0, backoff_base: float = 0.5, backoff_cap: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device_id = device_id
        self.signer = signer
        self.queue = ReadingQueue(queue_path)
        self.batch_size = batch_size
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout, follow_redirects=False)
        self._url = f"{hub_url.rstrip('/')}/v1/usage" if hub_url else "/v1/usage"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    # --- the caller's side ------------------------------------------------------------------------

    def add(self, reading_id: str, *, metric: str, quantity: Any, timestamp: Any,
            unit_price: Any = None) -> bool:
        """Queue one reading (durably, before returning). True if new; the same reading again is
        ignored; the same id with other content raises `ReadingConflict`."""
        return self.queue.add([make_reading(reading_id, metric, quantity, timestamp, unit_price)]) == 1

    def add_many(self, readings: Iterable[Mapping[str, Any]]) -> int:
        """Queue several readings (dicts as API.md writes them) in one transaction: all or none."""
        made = [make_reading(r["id"], r["metric"], r["quantity"], r["timestamp"], r.get("unit_price"))
                for r in readings]
        return self.queue.add(made)

    def refusals(self) -> list[QueuedReading]:
        """Readings the hub refused, each with its `code` and `detail`; they are not sent again."""
        return self.queue.readings("refused")

    def status(self) -> dict[str, int]:
        return self.queue.counts()

    def close(self) -> None:
        if self._own_http:
            self._http.close()
        self.queue.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending ---------------------------------------------------------------------------------

    def flush(self, max_wait: float | None = None, max_messages: int | None = None) -> FlushReport:
        """Send until nothing is queued. Transient failures are retried with backoff; with `max_wait`
        (seconds of backoff), gives up waiting and returns with readings still queued (they stay safe).
        `max_messages`: return after that many final answers (e.g. to show progress)."""
        report = FlushReport()
        failures = 0
        while max_messages is None or report.messages < max_messages:
            current = self.queue.open_message() or self.queue.form_message(self.device_id, self.batch_size)
            if current is None:
                break
            message_id, body = current
            try:
                self._send(message_id, body, report)
                failures = 0
            except Transient as exc:
                failures += 1
                report.retries += 1
                delay = self._delay(failures, exc.retry_after)
                if max_wait is not None and report.waited + delay > max_wait:
                    break
                log.info("usage message %s not answered (%s); again in %.2f s", message_id, exc, delay)
                report.waited += delay
                self._sleep(delay)
        counts = self.queue.counts()
        report.pending = counts["queued"] + counts["sending"]
        return report

    def _delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _send(self, message_id: str, body: dict[str, Any], report: FlushReport) -> None:
        self.queue.attempted(message_id)
        payload = json.dumps(sign_message(self.signer, body)).encode()
        try:
            response = self._http.post(self._url, content=payload, headers=self._headers)
        except httpx.TransportError as exc:
            raise Transient(type(exc).__name__) from None
        status = response.status_code
        if status in RETRYABLE or status >= 500:
            raise Transient(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
        try:
            answer = response.json()
        except ValueError:
            raise Transient(f"HTTP {status} without a JSON body") from None
        if not isinstance(answer, dict):
            raise Transient(f"HTTP {status}: unexpected answer")
        ids = [r["id"] for r in body["readings"]]
        code = str(answer.get("code") or "")
        if status in (401, 403) or code in CONFIG_CODES:
            raise DeviceConfigError(status, code or f"http_{status}", str(answer.get("detail", "")))
        outcomes = self._outcomes(status, code, answer, ids, body)
        self.queue.settle(message_id, answer, outcomes)
        report.messages += 1
        for o in outcomes.values():
            if o.state == "delivered":
                report.delivered += 1
            elif o.state == "duplicate":
                report.duplicates += 1
            elif o.state == "refused":
                report.refused += 1
                report.codes[o.code or ""] = report.codes.get(o.code or "", 0) + 1

    def _outcomes(self, status: int, code: str, answer: dict[str, Any], ids: list[str],
                  body: dict[str, Any]) -> dict[str, Outcome]:
        if 200 <= status < 300:
            dups = set(answer.get("duplicates") or [])
            tx, block = answer.get("tx_id"), answer.get("block")
            return {i: Outcome("duplicate" if i in dups else "delivered", tx_id=tx, block=block) for i in ids}
        if status == 409 and code == "duplicate_reading":
            return {i: Outcome("duplicate") for i in ids}
        if status == 413 or code in MESSAGE_ID_CODES:
            if status == 413:
                self.batch_size = max(1, len(ids) // 2)
            return {i: Outcome("queued") for i in ids}  # the hub wrote nothing: send them again, regrouped
        detail = str(answer.get("detail") or answer.get("title") or "")
        named: dict[str, Outcome] = {}
        for item in answer.get("readings") or []:
            rid = item.get("reading_id") if isinstance(item, dict) else None
            if rid in ids:
                named[rid] = Outcome("refused", str(item.get("code") or code),
                                     str(item.get("message") or detail))
        for rid in answer.get("reading_ids") or []:
            if rid in ids and rid not in named:
                named[rid] = Outcome("refused", code, detail)
        for error in answer.get("errors") or []:  # 422: locations into the message
            loc = (error.get("loc") or []) if isinstance(error, dict) else []
            if len(loc) >= 3 and loc[1] == "readings" and isinstance(loc[2], int) and loc[2] < len(ids):
                rid = ids[loc[2]]
                named.setdefault(rid, Outcome("refused", code or "invalid_request",
                                              f"{'.'.join(map(str, loc[3:]))}: {error.get('msg', '')}"))
        if not named:  # nothing singled out: the message as a whole was refused
            return {i: Outcome("refused", code or f"http_{status}", detail) for i in ids}
        return {i: named.get(i, Outcome("queued")) for i in ids}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
