"""Small helpers the hub's routers share."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from hub.api.problems import ApiError


async def json_body(request: Request) -> Any:
    """The body as parsed JSON; malformed JSON is a 400 `malformed_json` problem."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "malformed_json", "Malformed JSON", "the body is not valid JSON") from None
