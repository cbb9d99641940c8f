"""RFC 9457 problem details with a stable `code`: the one shape every API error takes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from hub.errors import PROBLEM_TYPE_BASE, HubError

PROBLEM_MEDIA_TYPE = "application/problem+json"
__all__ = ["PROBLEM_MEDIA_TYPE", "PROBLEM_TYPE_BASE", "ApiError", "Problem", "problem_responses"]


class ApiError(HubError):
    """A refusal made by the HTTP layer itself (authentication, body limits, a route's own checks), with the
    status first as HTTP code reads it. Lower layers raise `hub.errors.HubError` subclasses instead; both
    are answered by the one mapping in hub/api/errors.py."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(code, title, detail, status=status, **extra)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return self.problem(instance)


# --- OpenAPI documentation of the problem shape ---


class Problem(BaseModel):
    """RFC 9457 problem details as LedgerHub answers them; extra members (`reading_ids`, ...) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None


PROBLEM_DESCRIPTIONS = {
    400: "Bad request (malformed JSON, bad signature, a refused reading, ...)",
    401: "Missing, invalid or expired bearer token",
    403: "The caller's role may not do this",
    404: "Unknown id, or an object the caller may not see",
    409: "Conflicts with what is recorded",
    413: "Body larger than the configured limit",
    422: "Request does not match the schema (field errors in `errors`)",
    503: "Ledger unavailable or commit status unknown; safe to retry",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: each status documented as application/problem+json."""
    return {
        status: {
            "model": Problem,
            "description": PROBLEM_DESCRIPTIONS.get(status, "Problem"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
