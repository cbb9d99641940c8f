"""Webhooks ride the same delivery engine as ERP postings: one outbox row per (alert, webhook URL), written in
the same database transaction as the alert, claimed, retried with backoff and jitter behind the circuit
breaker, dead-lettered for an operator, retried through `POST /v1/deliveries/{id}/retry`.

What differs from an ERP posting is only the last step: the payload is already in the row (the alert as
JSON, signed with the receiver's secret at send time, so a retry carries a fresh timestamp), and a webhook
is not recorded on the ledger. Receivers deduplicate on `X-LedgerHub-Delivery`, which is the same on every
retry. A 2xx answer delivers; 408, 425, 429 and 5xx, timeouts and resets are retried; any other 4xx means
the receiver refuses the request as it is, so the row goes to the dead letters with its answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from connectors.base import BusinessRejection, ConnectorError, RetryableError, UnclearOutcome
from connectors.http import exchange
from hub.delivery.models import PENDING, Delivery
from hub.delivery.outbox import Claimed, message_uuid
from hub.portal.alerts import EVENT_HEADER, sign_webhook

CONNECTOR = "webhook"
DELIVERY_HEADER = "X-LedgerHub-Delivery"
RETRYABLE_4XX = {408, 425, 429}


def webhook_target(url: str) -> str:
    return "wh-" + hashlib.sha256(url.encode()).hexdigest()[:8]


def enqueue_webhook(session: Session, alert: Any, hook: dict[str, str], body: bytes) -> str:
    """The outbox row for one alert and one webhook URL (inside the caller's transaction)."""
    target = webhook_target(hook["url"])
    did = f"whk-{alert.id}-{target}"
    if session.get(Delivery, did) is None:
        now = dt.datetime.now(dt.UTC)
        session.add(
            Delivery(
                id=did,
                invoice_id=alert.id,
                contract_id=alert.contract_id,
                target=target,
                org=alert.org,
                provider_org="",
                customer_org="",
                connector=CONNECTOR,
                message_uuid=message_uuid(did),
                currency=alert.currency,
                total=alert.forecast_total,
                state=PENDING,
                attempts=0,
                needs_lookup=False,
                next_attempt_at=now,
                erp_messages="[]",
                erp_details="{}",
                created_at=now,
                updated_at=now,
                payload=json.dumps(
                    {"url": hook["url"], "secret": hook.get("secret", ""), "body": body.decode()}
                ),
            )
        )
    return did


def send(url: str, secret: str, body: bytes, delivery_id: str, *, timeout: float = 10.0) -> str:
    """POST one signed webhook; returns the receiver's status line for the record, raises by outcome."""
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: "alert.raised",
        DELIVERY_HEADER: delivery_id,
        **sign_webhook(secret, body),
    }
    with httpx.Client(timeout=timeout) as client:
        response = exchange(
            "webhook receiver", "POST", url, lambda: client.post(url, content=body, headers=headers)
        )
    if 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    if response.status_code in RETRYABLE_4XX:
        raise RetryableError(f"webhook receiver answered HTTP {response.status_code}")
    raise BusinessRejection(
        f"webhook receiver refused: HTTP {response.status_code}", erp_messages=[response.text[:500]]
    )


def deliver(dispatcher: Any, item: Claimed, now: dt.datetime) -> None:
    """The dispatcher's step for a webhook row: same breaker, attempts, backoff and dead letters."""
    with dispatcher.db() as session:
        row = session.get(Delivery, item.id)
        payload = json.loads(row.payload or "{}") if row is not None else {}
    if not payload.get("url"):
        dispatcher.outbox.dead_letter(
            item,
            code="webhook_misconfigured",
            message="no webhook payload",
            erp_messages=[],
            needs_lookup=False,
            attempt=None,
            now=now,
        )
        return
    key = f"webhook:{urlsplit(payload['url']).netloc}"
    reopen = dispatcher.breaker.allow(key)
    if reopen is not None:
        dispatcher.outbox.postpone(item, reopen, now)
        return
    attempt = item.attempts + 1
    if not dispatcher.outbox.mark_sending(item, attempt, now):
        return
    started = dispatcher.clock()
    try:
        answer = send(
            payload["url"],
            payload.get("secret", ""),
            payload["body"].encode(),
            item.id,
            timeout=float(getattr(dispatcher.options, "webhook_timeout", 10.0)),
        )
    except BusinessRejection as exc:
        dispatcher.breaker.success(key)
        record = dispatcher._attempt(attempt, "deliver", exc.code, str(exc), started, CONNECTOR)
        dispatcher.outbox.dead_letter(
            item,
            code=exc.code,
            message=str(exc),
            erp_messages=exc.erp_messages,
            needs_lookup=False,
            attempt=record,
            now=now,
        )
        return
    except (UnclearOutcome, RetryableError) as exc:
        dispatcher.breaker.failure(key)
        record = dispatcher._attempt(attempt, "deliver", exc.code, str(exc), started, CONNECTOR)
        dispatcher._later(item, attempt, exc.code, str(exc), False, None, record)
        return
    except ConnectorError as exc:  # e.g. a URL no retry can fix: an operator must look
        record = dispatcher._attempt(attempt, "deliver", exc.code, str(exc), started, CONNECTOR)
        dispatcher.outbox.dead_letter(item, code=exc.code, message=str(exc), erp_messages=exc.erp_messages,
                                      needs_lookup=False, attempt=record, now=now)
        return
    dispatcher.breaker.success(key)
    record = dispatcher._attempt(attempt, "deliver", "ok", answer, started, CONNECTOR)
    if dispatcher.outbox.mark_posted(item, CONNECTOR, answer, {}, record, dispatcher.clock()):
        # nothing goes on the ledger for a webhook: posted is delivered
        dispatcher.outbox.mark_delivered(
            item,
            None,
            dispatcher._attempt(attempt, "ledger", "skipped", None, dispatcher.clock()),
            dispatcher.clock(),
        )
