"""How an HTTP exchange with an ERP maps onto the connector error types, shared by the REST connectors.

The rule that makes retries safe: a request that never reached the ERP (connection refused) is retryable; a
write whose answer was lost (timeout, reset, 5xx) may have been applied, so it is an *unclear* outcome and
the delivery engine looks the document up before sending again; a failed read changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connectors.base import RetryableError, UnclearOutcome

LOST_ANSWER = (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def exchange(system: str, method: str, path: str, call: Callable[[], httpx.Response]) -> httpx.Response:
    """Run `call` (one request) and raise the error type its failure means; 5xx included."""
    write = method != "GET"
    try:
        response = call()
    except httpx.ConnectError as exc:
        raise RetryableError(f"{system} unreachable: {exc}") from exc
    except LOST_ANSWER as exc:
        if write:
            raise UnclearOutcome(f"no answer from {system} to {method} {path}: {exc}") from exc
        raise RetryableError(f"{system} read failed: {exc}") from exc
    if response.status_code >= 500:
        if write:
            raise UnclearOutcome(f"{system} answered HTTP {response.status_code} to {method} {path}")
        raise RetryableError(f"{system} read failed: HTTP {response.status_code}")
    return response
