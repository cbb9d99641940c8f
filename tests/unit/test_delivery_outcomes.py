"""The dispatcher's one failure table (hub/delivery/outcomes.py): each exception class a connector raises
maps to one fate, subclasses before their bases, anything unexpected to `connector_crashed`."""

from __future__ import annotations

import logging

import pytest

from connectors.base import (
    BusinessRejection,
    ConnectorConfigError,
    ConnectorError,
    RetryableError,
    UnclearOutcome,
)
from hub.delivery.outcomes import classify
from hub.delivery.signing import DocumentSigningFailed
from hub.delivery.webhooks import WebhookForbidden, WebhookMisconfigured

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("exc", "code", "retry", "breaker", "needs_lookup", "level"), [
    (BusinessRejection("refused", erp_messages=["closed period"]), "erp_rejected", False, "success", False,
     logging.WARNING),
    (ConnectorConfigError("no endpoint"), "connector_misconfigured", False, None, None, None),
    (DocumentSigningFailed("PIN"), "document_signing_failed", False, None, None, logging.ERROR),
    (WebhookMisconfigured("no url"), "webhook_misconfigured", False, None, None, None),
    (UnclearOutcome("timeout"), "erp_unclear_outcome", True, "failure", True, None),
    (RetryableError("refused"), "erp_unavailable", True, "failure", None, None),
    (WebhookForbidden("private"), "webhook_url_forbidden", False, None, True, None),
    (ConnectorError("other"), "connector_error", False, None, True, None),
    (ValueError("bug"), "connector_crashed", True, "failure", True, logging.ERROR),
])
def test_each_failure_has_one_rule(exc: Exception, code: str, retry: bool, breaker: str | None,
                                   needs_lookup: bool | None, level: int | None) -> None:
    verdict = classify(exc)
    assert (verdict.code, verdict.rule.retry, verdict.rule.breaker, verdict.rule.needs_lookup,
            verdict.rule.level) == (code, retry, breaker, needs_lookup, level)


def test_the_verdict_carries_the_message_and_the_erps_words() -> None:
    verdict = classify(BusinessRejection("refused", erp_messages=["closed period"]))
    assert (verdict.message, verdict.erp_messages) == ("refused", ["closed period"])
    crashed = classify(KeyError("x"))
    assert (crashed.message, crashed.erp_messages, crashed.rule.trace) == ("KeyError('x')", None, True)
