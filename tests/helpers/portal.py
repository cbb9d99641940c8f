"""Builders for the portal and alert tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.helpers.api import post_usage, usage
from tests.helpers.chaincode import reading, recent


def send(client: TestClient, key: Any, message_id: str, scans: str, hours: str = "0.5") -> None:
    """One signed message of current-month usage (scans and magnet hours) through the API, accepted."""
    message = usage(
        key,
        message_id,
        [
            reading(f"{message_id}-s", "scan", scans, recent(20)),
            reading(f"{message_id}-h", "magnet_hours", hours, recent(19)),
        ],
    )
    r = post_usage(client, message)
    assert r.status_code == 202, r.text
