"""The one place an error becomes an HTTP answer (ADR 0062).

Lower layers raise `hub.errors.HubError` (its subclasses say 403/404/409/400/503) or let a ledger error
through; routers and the HTTP machinery raise `ApiError` (a HubError too). Here, and only here, each of
them is mapped to an RFC 9457 problem+json response, in the pattern of httpx's `map_exceptions`: one
ordered table from the ledger's exception classes to a code and title, the first match wins (subclasses
before their bases). `Retry-After` and `WWW-Authenticate` are derived from the problem in
`problem_headers`, the same function the usage route uses for the answers ingestion records.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError
from hub.errors import HubError, NotFound, Unavailable, from_chaincode
from hub.ledger.base import (
    ChaincodeRejected,
    CommitStatusUnknown,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    TransactionInvalid,
)

log = logging.getLogger("ledgerhub.api")

# ledger error class -> (refusal class, code, title, answer carries retry_after); first isinstance match
# wins. ChaincodeRejected (a LedgerError) is a business refusal: it keeps the chaincode's own code and status.
LEDGER_ERRORS: tuple[tuple[type[LedgerError], type[HubError], str, str, bool], ...] = (
    (LedgerNotFound, NotFound, "not_found", "Not found", False),  # an unknown block or tx id (ADR 0058)
    (LedgerUnavailable, Unavailable, "ledger_unavailable", "Ledger unavailable", True),
    (TransactionInvalid, Unavailable, "ledger_conflict", "Ledger conflict, retry", False),
    (CommitStatusUnknown, Unavailable, "commit_status_unknown", "Commit status unknown", True),  # ADR 0038
    (EndorsementFailed, Unavailable, "endorsement_failed", "Endorsement failed", False),
    (LedgerError, Unavailable, "ledger_unavailable", "Ledger error", False),
)
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
HTTP_OTHER_CODE = "http_error"  # any other status Starlette raises


def to_hub_error(exc: BaseException, *, retry_after: int) -> HubError | None:
    """The refusal `exc` stands for, or None when it is no refusal (a bug: the caller answers 500)."""
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, ChaincodeRejected):
        return from_chaincode(exc.error)
    for cls, refusal, code, title, retry in LEDGER_ERRORS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, CommitStatusUnknown):
                extra["tx_id"] = exc.tx_id
            if retry:
                extra["retry_after"] = retry_after
            return refusal(code, title, str(exc), **extra)
    return None


def problem_headers(status: int, body: dict[str, Any]) -> dict[str, str] | None:
    """`Retry-After` for a 503 that says when (`retry_after`), `WWW-Authenticate` for a 401."""
    retry_after = body.get("retry_after") if status == 503 else None
    if retry_after is not None:
        return {"Retry-After": str(retry_after)}
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


def problem_response(error: HubError, request: Request | None = None) -> JSONResponse:
    body = error.problem(request.url.path if request is not None else None)
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE,
                        headers=problem_headers(error.status, body))


def _retry_after(request: Request) -> int:
    """Seconds a client waits before retrying after the ledger was unavailable (ADR 0038)."""
    return request.app.state.services.settings.ingest_retry_after_seconds


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    error = to_hub_error(exc, retry_after=_retry_after(request))
    if error is None:
        return await _unexpected(request, exc)
    return problem_response(error, request)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(ApiError(400, "malformed_json", "Malformed JSON",
                                         "the body is not valid JSON"), request)
    return problem_response(ApiError(422, "invalid_request", "Invalid request",
                                     "the request does not match the schema", errors=errors), request)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, HTTP_OTHER_CODE)
    return problem_response(ApiError(exc.status_code, code, str(exc.detail)), request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem_response(ApiError(500, "internal_error", "Internal error"), request)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can meet answers problem+json: refusals through `to_hub_error`, schema errors
    as 422 (400 for malformed JSON), Starlette's own HTTP errors with their status, anything else 500."""
    app.add_exception_handler(HubError, _refusal)
    app.add_exception_handler(LedgerError, _refusal)  # ChaincodeRejected included
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
