"""Webhooks ride the same delivery engine as ERP postings: one outbox row per (alert, webhook URL), written in
the same database transaction as the alert, claimed, retried with backoff and jitter behind the circuit
breaker, dead-lettered for an operator, retried through `POST /v1/deliveries/{id}/retry`.

The sender is `WebhookConnector`, the registry's `webhook` connector (a message connector, ADR 0060): the
dispatcher's one attempt path runs it and classifies its errors. What differs from an ERP posting is only
what is sent: the payload is already in the row (the alert as JSON, signed with the receiver's secret at
send time, so a retry carries a fresh timestamp), and a webhook is not recorded on the ledger. Receivers
deduplicate on `X-LedgerHub-Delivery`, which is the same on every retry. A 2xx answer delivers; 408, 425,
429 and 5xx, timeouts and resets are retried; any other answer (4xx, and 3xx: redirects are never
followed) means the receiver refuses the request as it is, so the row goes to the dead letters.

The URL is the tenant's choice, so every send is checked against the egress policy first
(`hub.delivery.egress`: https only, public addresses only, unless the operator allows more) with the
addresses the name resolves to now, and connects to an address that was checked. A refused URL is
dead-lettered as `webhook_url_forbidden` without any connection. What the tenant sees of an attempt is
the status code and its standard reason phrase, never the receiver's body (it could be an internal page),
and one message for every failure to get an answer (refused, reset, timed out alike), so deliveries cannot
be used to map ports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from connectors.base import (
    MESSAGE,
    BusinessRejection,
    ConnectorConfig,
    ConnectorConfigError,
    ConnectorError,
    ErpRef,
    ErpStatus,
    OutboxMessage,
    RetryableError,
)
from connectors.base import Delivery as DeliveryRef
from hub.delivery.egress import (
    Egress,
    EgressPolicy,
    EgressRefused,
    Resolver,
    Unresolvable,
    pinned_request,
    system_resolver,
)
from hub.delivery.models import PENDING, Delivery
from hub.delivery.outbox import message_uuid
from hub.portal.alerts import EVENT_HEADER, sign_webhook

log = logging.getLogger("ledgerhub.delivery")
CONNECTOR = "webhook"
NO_ANSWER = "webhook receiver did not answer"
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


class WebhookForbidden(ConnectorError):
    """The URL is refused by the egress policy; nothing was sent."""

    code = "webhook_url_forbidden"


def status_text(status: int) -> str:
    """`HTTP 404 Not Found`: the code and its standard phrase, not the receiver's own words."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def send(url: str, secret: str, body: bytes, delivery_id: str, *, timeout: float = 10.0,
         policy: EgressPolicy | None = None, resolve: Resolver = system_resolver,
         event: str = "alert.raised", egress: Egress | None = None) -> str:
    """POST one signed webhook; returns the receiver's status line for the record, raises by outcome.
    `egress` (the engine's policy and resolver) wins over `policy` and `resolve`."""
    guard = egress or Egress(policy or EgressPolicy(), lambda: resolve)
    try:
        target = guard.check(url)
    except Unresolvable:
        raise RetryableError("webhook host does not resolve") from None
    except EgressRefused as exc:
        raise WebhookForbidden(f"webhook URL refused: {exc.reason}") from None
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,  # alert.raised, or a lifecycle event (hub/delivery/lifecycle.py)
        DELIVERY_HEADER: delivery_id,
        **sign_webhook(secret, body),
    }
    response = None
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for address in target.addresses or (None,):
            request_url, extra, extensions = (
                (url, {}, {}) if address is None else pinned_request(target, address))
            try:
                response = client.post(request_url, content=body, headers={**headers, **extra},
                                       extensions=extensions)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # not sent: try the next address
                log.info("webhook connect failed: %s", type(exc).__name__, extra={"delivery_id": delivery_id})
            except httpx.TransportError as exc:  # sent, answer lost: the receiver deduplicates a retry
                log.info("webhook answer lost: %s", type(exc).__name__, extra={"delivery_id": delivery_id})
                raise RetryableError(NO_ANSWER) from None
    if response is None:
        raise RetryableError(NO_ANSWER)
    status = response.status_code
    if 200 <= status < 300:
        return status_text(status)
    if status in RETRYABLE_4XX or status >= 500:
        raise RetryableError(f"webhook receiver answered {status_text(status)}")
    # the body is not kept: it is the receiver's (maybe an internal page), and the tenant reads this record
    raise BusinessRejection(f"webhook receiver refused: {status_text(status)}", erp_messages=[])


class WebhookMisconfigured(ConnectorConfigError):
    """The outbox row carries no webhook to send (no URL): nothing was sent."""

    code = "webhook_misconfigured"


class WebhookConnector:
    """The `webhook` connector of the registry (entry point `webhook`): a message connector, so the delivery
    engine treats its rows like any other (outbox row, write-ahead, breaker, retries with backoff, dead
    letters, metrics) but hands it the row's payload instead of an invoice and records nothing on the
    ledger. Its `timeout` (seconds) is `webhooks.timeout_seconds`, or `connectors.webhook.timeout`. The
    egress policy comes from the hub (`ConnectorConfig.egress`), never from a tenant."""

    name = CONNECTOR
    receives = MESSAGE

    def __init__(self, config: ConnectorConfig) -> None:
        self.timeout = float(config.settings.get("timeout", 10.0))
        self.egress: Egress = config.egress if config.egress is not None else Egress(EgressPolicy())

    def prepare(self, payload: Mapping[str, Any]) -> OutboxMessage:
        """The message of one outbox row; the breaker is per receiving host."""
        if not payload.get("url"):
            raise WebhookMisconfigured("no webhook payload")
        return OutboxMessage(payload=payload, receiver=f"webhook:{urlsplit(str(payload['url'])).netloc}")

    def deliver(self, document: OutboxMessage, delivery: DeliveryRef) -> ErpRef:
        payload = document.payload
        answer = send(str(payload["url"]), str(payload.get("secret", "")), str(payload["body"]).encode(),
                      delivery.id, timeout=self.timeout, egress=self.egress,
                      event=str(payload.get("event", "alert.raised")))
        return ErpRef(system=CONNECTOR, document_id=answer, target=delivery.target)

    def lookup(self, document: OutboxMessage, delivery: DeliveryRef) -> ErpRef | None:
        return None  # receivers de-duplicate on X-LedgerHub-Delivery: a resend is harmless

    def status(self, ref: ErpRef) -> ErpStatus:
        raise ConnectorConfigError("a webhook has no payment status to read back")

    def close(self) -> None:
        pass
