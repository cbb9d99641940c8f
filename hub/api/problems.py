"""RFC 9457 problem details with a stable `code`: the one shape every API error takes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://ledgerhub.dev/problems/"


class ApiError(Exception):
    """Raise anywhere in a request; the app's handler answers with problem+json."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
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



# --- OpenAPI documentation of the problem shape (added by the hub service; ApiError above is unchanged) ---


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
