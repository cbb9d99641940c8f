"""schemathesis against the app's own OpenAPI document (ASGI, the real embedded ledger behind it): for every
operation, generated requests (bounded, derandomised) never get a 5xx and every response conforms to the
documented schema (status code documented, content type, body shape).

Callers: each operation is exercised with a provider token by default; schemathesis also sends its own
negative cases (wrong types, missing fields) which must be 4xx problem+json, never 5xx."""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis import checks as st_checks

from tests.helpers.api import (
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    setup_contract,
)
from tests.helpers.chaincode import make_device_key
from tests.helpers.lifecycle import AT_UNCONFIGURE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

MAX_EXAMPLES = 12
# operations whose documented callers are not providers get their own token, so generated cases reach the
# handler instead of stopping at 403
TOKEN_FOR = {"/v1/usage": "tok-device", "/v1/audit/verify": "tok-auditor", "/v1/keys": "tok-operator",
             "/close": "tok-operator", "/accept": "tok-customer", "/dispute": "tok-customer",
             "/retry": "tok-operator", "/reject": "tok-customer"}

_tmp = Path(__import__("tempfile").mkdtemp(prefix="schemathesis-"))
_ledger = ControlledLedger(embedded_ledger(_tmp / "ledger"))
_client_cm = hub_client(hub_settings(_tmp), _ledger, background=False, areas=("keys", "delivery"))
_client = _client_cm.__enter__()
setup_contract(_client, make_device_key("schemathesis"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _client.app)
RESULTS: dict[str, int] = {"calls": 0, "5xx": 0}


def token_for(path: str) -> str:
    for fragment, token in TOKEN_FOR.items():
        if fragment in path:
            return token
    return "tok-provider"


def _close_hub() -> None:
    """Stop the import-time hub once. Its event-loop thread is not a daemon, so when `-m` deselects this
    module's tests (the module fixture below never runs) a process that imported it would never exit:
    tests/conftest.py calls this from pytest_unconfigure as well."""
    if RESULTS.get("closed"):
        return
    RESULTS["closed"] = 1
    _client_cm.__exit__(None, None, None)
    _ledger.close()


AT_UNCONFIGURE.append(_close_hub)


@pytest.fixture(scope="module", autouse=True)
def _shutdown():
    yield
    _close_hub()
    print(f"\nschemathesis: {RESULTS['calls']} generated requests, {RESULTS['5xx']} 5xx")


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_api_conforms_to_its_schema(case) -> None:
    headers = auth(token_for(case.path))
    response = case.call(headers=headers)
    RESULTS["calls"] += 1
    if response.status_code >= 500:
        RESULTS["5xx"] += 1
    case.validate_response(
        response,
        checks=[st_checks.not_a_server_error, st_checks.status_code_conformance,
                st_checks.content_type_conformance, st_checks.response_schema_conformance],
        headers=headers,
    )
