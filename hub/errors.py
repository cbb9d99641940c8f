"""The hub's domain errors: what a lower layer raises when it refuses, and nothing about HTTP transport.

Services, ingestion, audit, the portal's data and the bank raise a `HubError` (or let a ledger error
through); `hub/api/errors.py` is the one place that turns those, `ChaincodeRejected` and the ledger's error
hierarchy into problem+json answers (ADR 0062). An error carries its stable `code` (docs/api-errors.md),
a `title`, an optional `detail`, extra members for the answer (`extra`, e.g. `reading_ids`, `retry_after`)
and the `status` the API answers with: the status is part of the refusal's meaning (404 unknown, 409
conflict, 503 retry later), so it is decided where the refusal is made, never re-derived from text.

`problem()` is the refusal as an RFC 9457 document. It is also what ingestion records as a message's first
answer (the idempotency record replays it byte for byte), which is why it lives here and not in hub/api.
"""

from __future__ import annotations

from typing import Any, ClassVar

from chaincode.errors import ERROR_STATUS, ChaincodeError

PROBLEM_TYPE_BASE = "https://ledgerhub.dev/problems/"

# titles for chaincode codes whose name alone does not say what happened
CHAINCODE_TITLES = {
    # 503: the hub's clock (which stamps proposals) and an endorsing peer's disagree; nothing was written,
    # the request can be retried as it is once the clocks agree (ADR 0027)
    "tx_timestamp_skew": "Ledger peer refused: clock skew between the hub and the peer",
}


class HubError(Exception):
    """A refusal with a stable code. Subclasses fix the status and a default code and title."""

    default_status: ClassVar[int] = 400
    default_code: ClassVar[str] = "invalid_argument"
    default_title: ClassVar[str] = "Invalid request"

    def __init__(self, code: str | None = None, title: str | None = None, detail: str | None = None, *,
                 status: int | None = None, **extra: Any) -> None:
        self.code = code or self.default_code
        self.title = title or self.default_title
        self.detail = detail
        self.status = status if status is not None else self.default_status
        self.extra = extra
        super().__init__(detail or self.title)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document: type, title, status, code, detail?, instance?, then `extra`."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.detail or self.title!r})"


class InvalidInput(HubError):
    """400: the request itself is wrong (a bad signature, a repeated id, an unknown metric, ...)."""


class Forbidden(HubError):
    """403: the caller's role or org may not do this."""

    default_status = 403
    default_code = "forbidden"
    default_title = "Forbidden"


class WrongHubOrg(Forbidden):
    """403 `wrong_hub_org`: this hub acts for one org (`ledgerhub serve --org`, ADR 0065) and the caller,
    or a ledger call, is of another; that org's own hub serves it. Nothing is done as this hub's org."""

    default_code = "wrong_hub_org"
    default_title = "This hub serves another org"


class NotFound(HubError):
    """404: unknown, or not visible to the caller (the two answer alike, so ids cannot be probed)."""

    default_status = 404
    default_code = "not_found"
    default_title = "Not found"


class Conflict(HubError):
    """409: conflicts with what is recorded."""

    default_status = 409
    default_code = "conflict"
    default_title = "Conflict"


class Unavailable(HubError):
    """503: not now (saturated, shutting down, ledger unreachable); nothing was recorded, retry.
    `retry_after` (seconds) in `extra` becomes the answer's `Retry-After` header."""

    default_status = 503
    default_code = "unavailable"
    default_title = "Unavailable"


def from_chaincode(error: ChaincodeError) -> HubError:
    """A chaincode refusal with the same code, the status ERROR_STATUS gives it, its details as members."""
    extra = {k: v for k, v in error.details.items() if k not in {"type", "title", "status", "code"}}
    title = CHAINCODE_TITLES.get(error.code) or error.code.replace("_", " ").capitalize()
    return HubError(error.code, title, error.message, status=ERROR_STATUS.get(error.code, 400), **extra)
