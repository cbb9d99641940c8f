"""What the dispatcher does with a failed attempt: one table from the exception a connector raised to the
row's fate, for every connector (ERP and webhook alike, ADR 0060).

First matching class wins, so subclasses come before their bases:

| raised | row | breaker | needs_lookup | logged |
|---|---|---|---|---|
| `DocumentSigningFailed` (XML signing inside `deliver`) | dead letter | - | kept | ERROR |
| `BusinessRejection` | dead letter | success (the ERP answered) | False | WARNING |
| `ConnectorConfigError` | dead letter | - | kept | - |
| `UnclearOutcome` | retry (look up first) | failure | True | on retry |
| `RetryableError` | retry | failure | kept | on retry |
| other `ConnectorError` | dead letter | - | True | - |
| anything else | retry as `connector_crashed` | failure | True | ERROR with traceback |

A retry dead-letters instead once the attempt budget is spent. A message connector (webhooks) never looks
up, so its rows keep `needs_lookup` False whatever the table says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from connectors.base import (
    BusinessRejection,
    ConnectorConfigError,
    ConnectorError,
    RetryableError,
    UnclearOutcome,
)
from hub.delivery.signing import DocumentSigningFailed

CRASHED = "connector_crashed"


@dataclass(frozen=True)
class Rule:
    retry: bool  # False: dead letter now
    breaker: Literal["success", "failure"] | None
    needs_lookup: bool | None  # None: keep the row's
    level: int | None = None  # log level of the failure itself (retries log their own line)
    note: str = ""
    trace: bool = False  # log the traceback (a connector bug, not an answer)


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    code: str
    message: str
    erp_messages: list[str] | None


TABLE: tuple[tuple[type[ConnectorError], Rule], ...] = (
    (DocumentSigningFailed, Rule(False, None, None, logging.ERROR,
                                 "invoice document could not be signed: not sent")),
    (BusinessRejection, Rule(False, "success", False, logging.WARNING, "delivery rejected by the ERP")),
    (ConnectorConfigError, Rule(False, None, None)),
    (UnclearOutcome, Rule(True, "failure", True)),
    (RetryableError, Rule(True, "failure", None)),
    (ConnectorError, Rule(False, None, True)),
)
CRASH = Rule(True, "failure", True, logging.ERROR, "connector raised", trace=True)


def classify(exc: BaseException) -> Verdict:
    """The rule for `exc` with the code, message and ERP messages the row and its history get."""
    if isinstance(exc, ConnectorError):
        for kind, rule in TABLE:
            if isinstance(exc, kind):
                return Verdict(rule, exc.code, str(exc), exc.erp_messages)
    return Verdict(CRASH, CRASHED, repr(exc), None)
