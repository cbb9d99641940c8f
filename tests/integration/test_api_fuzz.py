"""Property-based requests from the OpenAPI document (schemathesis): whatever a caller sends, the hub
answers without a server error, and every error is problem+json with a stable code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from hub.api.app import create_app
from tests.helpers.api import ControlledLedger, embedded_ledger, hub_settings, setup_contract

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKENS = ("tok-provider", "tok-customer", "tok-device", "tok-operator", "tok-auditor")


def test_no_server_errors_and_only_problem_json(tmp_path: Path):
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    app = create_app(hub_settings(tmp_path), ledger, background=False)
    failures: list[tuple[object, ...]] = []
    try:
        with TestClient(app) as client:
            setup_contract(client)
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            operations = [result.ok() for result in schema.get_all_operations()]
            assert len(operations) >= 15
            for operation in operations:
                for token in TOKENS:
                    _fuzz(operation, token, failures)
    finally:
        ledger.close()
    assert failures == []


def _fuzz(operation: Any, token: str, failures: list[tuple[object, ...]]) -> None:
    """Up to 8 generated requests for one operation as one role."""
    where = (operation.method, operation.path, token)

    @given(operation.as_strategy())
    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        content_type = str(response.headers.get("content-type", ""))
        if response.status_code >= 500 and response.status_code not in (501, 503):
            failures.append((*where, response.status_code, response.text[:200]))
        elif response.status_code >= 400 and "application/problem+json" not in content_type:
            failures.append((*where, response.status_code, content_type))
        elif response.status_code >= 400 and '"code"' not in response.text:
            failures.append((*where, "no code"))

    check()
