"""The one mapping of errors to HTTP answers (hub/api/errors.py, ADR 0062): every HubError subclass and every
ledger error -> status, code, title, Retry-After; through a real FastAPI app with the hub's handlers."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chaincode.errors import ChaincodeError
from hub.api.deps import Services
from hub.api.errors import LEDGER_ERRORS, install_error_handlers, problem_response, to_hub_error
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError
from hub.config import Settings
from hub.errors import (
    PROBLEM_TYPE_BASE,
    Conflict,
    Forbidden,
    HubError,
    InvalidInput,
    NotFound,
    Unavailable,
    from_chaincode,
)
from hub.ledger.base import (
    ChaincodeRejected,
    CommitStatusUnknown,
    EndorsementFailed,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    TransactionInvalid,
)

pytestmark = pytest.mark.unit
RETRY_AFTER = 7  # settings.ingest_retry_after_seconds of the test app

SUBCLASSES = [
    (InvalidInput, 400, "invalid_argument", "Invalid request"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (NotFound, 404, "not_found", "Not found"),
    (Conflict, 409, "conflict", "Conflict"),
    (Unavailable, 503, "unavailable", "Unavailable"),
]
LEDGER = [
    # (error, status, code, title, retry_after, extra members)
    (LedgerUnavailable("peer down"), 503, "ledger_unavailable", "Ledger unavailable", RETRY_AFTER, {}),
    (TransactionInvalid("tx1", "MVCC_READ_CONFLICT"), 503, "ledger_conflict", "Ledger conflict, retry", None,
     {}),
    (CommitStatusUnknown("tx2", "timeout"), 503, "commit_status_unknown", "Commit status unknown",
     RETRY_AFTER, {"tx_id": "tx2"}),
    (EndorsementFailed("policy"), 503, "endorsement_failed", "Endorsement failed", None, {}),
    (LedgerError("odd"), 503, "ledger_unavailable", "Ledger error", None, {}),
    (LedgerNotFound("transaction", "tx9"), 404, "not_found", "Not found", None, {}),
]


def _app(*errors: BaseException) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.state.services = Services(Settings(ingest_retry_after_seconds=RETRY_AFTER), None, None)

    @app.get("/raise/{index}")
    def _raise(index: int) -> None:
        raise errors[index]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("cls", "status", "code", "title"), SUBCLASSES)
def test_each_subclass_has_its_status_code_and_title(cls: type[HubError], status: int, code: str,
                                                      title: str) -> None:
    error = cls()
    assert (error.status, error.code, error.title) == (status, code, title)
    assert error.detail is None and error.extra == {}
    assert isinstance(error, HubError)
    named = cls("unknown_contract", "Unknown contract", "no contract 'c1'", contract_id="c1")
    assert named.problem("/v1/x") == {
        "type": PROBLEM_TYPE_BASE + "unknown_contract", "title": "Unknown contract", "status": status,
        "code": "unknown_contract", "detail": "no contract 'c1'", "instance": "/v1/x", "contract_id": "c1",
    }
    assert to_hub_error(named, retry_after=RETRY_AFTER) is named


@pytest.mark.parametrize(("cls", "status", "code", "title"), SUBCLASSES)
def test_each_subclass_answers_over_http(cls: type[HubError], status: int, code: str, title: str) -> None:
    r = _app(cls(detail="why", retry_after=3))
    response = r.get("/raise/0")
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert (body["code"], body["title"], body["detail"], body["instance"]) == (code, title, "why", "/raise/0")
    # Retry-After only where a 503 says when
    assert response.headers.get("retry-after") == ("3" if status == 503 else None)


@pytest.mark.parametrize(("error", "status", "code", "title", "retry_after", "extra"), LEDGER)
def test_each_ledger_error(error: LedgerError, status: int, code: str, title: str, retry_after: int | None,
                           extra: dict[str, str]) -> None:
    mapped = to_hub_error(error, retry_after=RETRY_AFTER)
    assert mapped is not None
    assert (mapped.status, mapped.code, mapped.title, mapped.detail) == (status, code, title, str(error))
    expected = dict(extra, **({"retry_after": retry_after} if retry_after is not None else {}))
    assert mapped.extra == expected
    response = _app(error).get("/raise/0")
    assert response.status_code == status
    body = response.json()
    assert (body["code"], body["title"], body["detail"]) == (code, title, str(error))
    assert {k: body[k] for k in expected} == expected
    assert response.headers.get("retry-after") == (str(retry_after) if retry_after is not None else None)


def test_the_table_covers_the_whole_ledger_hierarchy() -> None:
    """Subclasses come before their bases (first match wins) and the base catches the rest."""
    classes = [cls for cls, *_ in LEDGER_ERRORS]
    for i, cls in enumerate(classes):
        assert not any(issubclass(cls, earlier) for earlier in classes[:i]), cls
    assert classes[-1] is LedgerError

    class NewLedgerError(LedgerError):
        pass

    mapped = to_hub_error(NewLedgerError("x"), retry_after=1)
    assert mapped is not None and (mapped.status, mapped.code) == (503, "ledger_unavailable")


@pytest.mark.parametrize(("code", "status"), [("unknown_contract", 404), ("forbidden", 403),
                                              ("period_closed", 409), ("invalid_plan", 400),
                                              ("tx_timestamp_skew", 503)])
def test_chaincode_refusals_keep_their_code(code: str, status: int) -> None:
    rejected = ChaincodeRejected(ChaincodeError(code, "because", status=999, reading_ids=["r1"]))
    mapped = to_hub_error(rejected, retry_after=RETRY_AFTER)
    assert mapped is not None
    assert (mapped.status, mapped.code, mapped.detail) == (status, code, "because")
    assert mapped.extra == {"reading_ids": ["r1"]}  # details pass through; `status` cannot override
    assert "retry_after" not in mapped.extra
    response = _app(rejected).get("/raise/0")
    assert response.status_code == status and response.json()["code"] == code
    assert "retry-after" not in response.headers


def test_clock_skew_has_a_title_that_says_so() -> None:
    assert from_chaincode(ChaincodeError("tx_timestamp_skew", "x")).title.startswith("Ledger peer refused")
    assert from_chaincode(ChaincodeError("period_closed", "x")).title == "Period closed"


def test_api_error_is_a_hub_error_with_the_old_signature() -> None:
    error = ApiError(401, "invalid_token", "Invalid bearer token")
    assert isinstance(error, HubError) and error.status == 401 and error.body() == error.problem()
    response = _app(error).get("/raise/0")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert problem_response(ApiError(503, "x", "X", retry_after=2)).headers["retry-after"] == "2"


def test_anything_else_is_a_500_without_details() -> None:
    assert to_hub_error(ValueError("secret detail"), retry_after=1) is None
    response = _app(ValueError("secret detail")).get("/raise/0")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error" and "secret" not in response.text


def test_unknown_route_and_method_are_problems() -> None:
    client = _app()
    assert client.get("/nowhere").json()["code"] == "not_found"
    assert client.post("/raise/0").json()["code"] == "method_not_allowed"
    assert client.get("/raise/x").json()["code"] == "invalid_request"
