"""connectors.http.exchange: which failure of one HTTP exchange is safe to retry, which one needs a look-up
first (the write may have been applied), and which one no retry can fix."""

from __future__ import annotations

import httpx
import pytest

from connectors.base import ConnectorConfigError, RetryableError, UnclearOutcome
from connectors.http import exchange

pytestmark = pytest.mark.unit
REQUEST = httpx.Request("POST", "http://erp.invalid/x")


def _raise(exc: Exception):
    def call() -> httpx.Response:
        raise exc

    return call


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused", request=REQUEST), httpx.ConnectTimeout("syn", request=REQUEST),
     httpx.PoolTimeout("pool", request=REQUEST)],
    ids=["connect-refused", "connect-timeout", "pool-timeout"],
)
def test_a_request_that_never_left_is_retryable_even_for_a_write(exc: Exception) -> None:
    with pytest.raises(RetryableError) as info:
        exchange("erp", "POST", "/x", _raise(exc))
    assert not isinstance(info.value, UnclearOutcome)


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read", request=REQUEST), httpx.WriteTimeout("write", request=REQUEST),
     httpx.RemoteProtocolError("eof", request=REQUEST), httpx.ReadError("reset", request=REQUEST),
     httpx.WriteError("pipe", request=REQUEST), httpx.CloseError("close", request=REQUEST)],
    ids=["read-timeout", "write-timeout", "remote-protocol", "read-error", "write-error", "close-error"],
)
def test_a_lost_answer_is_unclear_for_a_write_and_retryable_for_a_read(exc: Exception) -> None:
    with pytest.raises(UnclearOutcome):
        exchange("erp", "POST", "/x", _raise(exc))
    with pytest.raises(RetryableError) as info:
        exchange("erp", "GET", "/x", _raise(exc))
    assert not isinstance(info.value, UnclearOutcome)


def test_server_errors_and_answers() -> None:
    with pytest.raises(UnclearOutcome, match="HTTP 503"):
        exchange("erp", "POST", "/x", lambda: httpx.Response(503))
    with pytest.raises(RetryableError, match="HTTP 500"):
        exchange("erp", "GET", "/x", lambda: httpx.Response(500))
    assert exchange("erp", "POST", "/x", lambda: httpx.Response(400)).status_code == 400  # caller's to map


def test_a_bad_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConnectorConfigError):
        exchange("erp", "POST", "/x", _raise(httpx.UnsupportedProtocol("ftp", request=REQUEST)))
