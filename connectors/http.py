"""How an HTTP exchange with an ERP maps onto the connector error types, shared by the REST connectors.

The rule that makes retries safe: a request that never reached the ERP (connection refused) is retryable; a
write whose answer was lost (timeout, reset, 5xx) may have been applied, so it is an *unclear* outcome and
the delivery engine looks the document up before sending again; a failed read changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connectors.base import ConnectorConfigError, RetryableError, UnclearOutcome

# the request never left this host: nothing can have been applied
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def exchange(system: str, method: str, path: str, call: Callable[[], httpx.Response]) -> httpx.Response:
    """Run `call` (one request) and raise the error type its failure means; 5xx included."""
    write = method != "GET"
    try:
        response = call()
    except httpx.UnsupportedProtocol as exc:  # a base_url no retry can fix
        raise ConnectorConfigError(f"{system}: {exc}") from exc
    except NOT_SENT as exc:
        raise RetryableError(f"{system} unreachable: {exc!r}") from exc
    except httpx.TransportError as exc:  # timeouts, resets, protocol errors: the answer was lost
        if write:
            raise UnclearOutcome(f"no answer from {system} to {method} {path}: {exc!r}") from exc
        raise RetryableError(f"{system} read failed: {exc!r}") from exc
    if response.status_code >= 500:
        if write:
            raise UnclearOutcome(f"{system} answered HTTP {response.status_code} to {method} {path}")
        raise RetryableError(f"{system} read failed: HTTP {response.status_code}")
    return response
