"""`/v1/keys` through FastAPI: operators only, problem+json refusals, rotation visible to signers."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from hub.api.deps import Services
from hub.api.problems import PROBLEM_MEDIA_TYPE, ApiError
from hub.api.routers.keys import router
from hub.config import Settings
from hub.keys.signer import sign_bytes, verify_bytes

pytestmark = [pytest.mark.integration, pytest.mark.hsm]

TOKENS = {
    "op-token": {"org": "ProviderMSP", "role": "operator"},
    "customer-op-token": {"org": "CustomerMSP", "role": "operator"},
    "platform-op-token": {"org": "HubOperatorMSP", "role": "operator", "scope": "platform"},
    "provider-token": {"org": "ProviderMSP", "role": "provider"},
    "customer-token": {"org": "CustomerMSP", "role": "customer"},
    "auditor-token": {"org": "AuditorMSP", "role": "auditor"},
}


def _app(keys: object) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(ApiError)
    async def _problem(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(request.url.path), status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE)

    app.include_router(router)
    app.state.services = Services(settings=Settings(tokens=TOKENS), ledger=None, db=None, keys=keys)
    return app


@pytest.fixture
def client(hsm_manager) -> TestClient:
    return TestClient(_app(hsm_manager))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_operator_lists_keys(client: TestClient) -> None:
    r = client.get("/v1/keys", headers=auth("op-token"))
    assert r.status_code == 200
    keys = {k["name"]: k for k in r.json()["keys"]}
    assert keys["endorser-ProviderMSP"]["current_version"] == 1
    assert keys["endorser-ProviderMSP"]["backend"] == "pkcs11"
    assert len(keys["endorser-ProviderMSP"]["versions"][0]["key_id"]) == 64
    assert "PRIVATE" not in r.text


@pytest.mark.parametrize("token", ["provider-token", "customer-token", "auditor-token"])
def test_other_roles_get_403(client: TestClient, token: str, hsm_manager) -> None:
    for method, path in [("get", "/v1/keys"), ("post", "/v1/keys/endorser-ProviderMSP/rotate"),
                         ("post", "/v1/keys/endorser-ProviderMSP/disable")]:
        r = getattr(client, method)(path, headers=auth(token))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert hsm_manager.describe("endorser-ProviderMSP")["current_version"] == 1
    assert hsm_manager.describe("endorser-ProviderMSP")["enabled"] is True


def test_unauthenticated_gets_401(client: TestClient) -> None:
    assert client.get("/v1/keys").json()["code"] == "unauthenticated"
    assert client.get("/v1/keys", headers=auth("nope")).json()["code"] == "invalid_token"


def test_rotate_through_the_api(client: TestClient, hsm_manager) -> None:
    signer = hsm_manager.signer("endorser-ProviderMSP")
    old = signer.key_id
    r = client.post("/v1/keys/endorser-ProviderMSP/rotate", headers=auth("op-token"))
    assert r.status_code == 200
    body = r.json()
    assert body["current_version"] == 2 and body["versions"][1]["key_id"] == signer.key_id != old
    assert verify_bytes(signer.public_key(), sign_bytes(signer, b"m"), b"m")


def test_disable_and_enable_through_the_api(client: TestClient, hsm_manager) -> None:
    from hub.keys.manager import KeyManagerError

    op = auth("op-token")
    assert client.post("/v1/keys/client-ProviderMSP/disable", headers=op).json()["enabled"] is False
    with pytest.raises(KeyManagerError):
        sign_bytes(hsm_manager.signer("client-ProviderMSP"), b"x")
    assert client.post("/v1/keys/client-ProviderMSP/enable", headers=op).json()["enabled"] is True


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/v1/keys/no-such-key/rotate", 404, "unknown_key"),
    ("/v1/keys/ca-ProviderMSP/rotate", 409, "ca_rotation_unsupported"),
    ("/v1/keys/no-such-key/disable", 404, "unknown_key"),
])
def test_refusals_are_problems(
    client: TestClient, hsm_manager, path: str, status: int, code: str
) -> None:
    before = hsm_manager.list()
    r = client.post(path, headers=auth("op-token"))
    assert r.status_code == status and r.json()["code"] == code
    assert hsm_manager.list() == before


def test_without_a_key_manager_the_api_says_so() -> None:
    r = TestClient(_app(None)).get("/v1/keys", headers=auth("op-token"))
    assert r.status_code == 503 and r.json()["code"] == "keys_unavailable"


def test_an_operator_reaches_only_its_own_orgs_keys(client: TestClient, hsm_manager) -> None:
    """The ProviderMSP operator cannot see, rotate, disable or enable `endorser-CustomerMSP` (disabling it
    would stop the ledger for every party): the answer is the unknown key's 404, and nothing changes."""
    before = hsm_manager.describe("endorser-CustomerMSP")
    unknown = client.get("/v1/keys/no-such-key", headers=auth("op-token")).json()
    for method, path in [("get", "/v1/keys/endorser-CustomerMSP"),
                         ("post", "/v1/keys/endorser-CustomerMSP/rotate"),
                         ("post", "/v1/keys/endorser-CustomerMSP/disable"),
                         ("post", "/v1/keys/endorser-CustomerMSP/enable")]:
        r = getattr(client, method)(path, headers=auth("op-token"))
        assert (r.status_code, r.json()["code"]) == (404, "unknown_key"), (path, r.text)
        assert r.json()["title"] == unknown["title"].replace("no-such-key", "endorser-CustomerMSP")
    assert hsm_manager.describe("endorser-CustomerMSP") == before
    listed = client.get("/v1/keys", headers=auth("op-token")).json()["keys"]
    assert {k["org"] for k in listed} == {"ProviderMSP"}
    own = client.get("/v1/keys", headers=auth("customer-op-token")).json()["keys"]
    assert "endorser-CustomerMSP" in {k["name"] for k in own} and {k["org"] for k in own} == {"CustomerMSP"}
    assert client.post("/v1/keys/endorser-CustomerMSP/rotate",
                       headers=auth("customer-op-token")).json()["current_version"] == 2


def test_a_platform_operator_is_explicit_configuration(client: TestClient, hsm_manager) -> None:
    everything = client.get("/v1/keys", headers=auth("platform-op-token")).json()["keys"]
    assert {k["org"] for k in everything} == {"ProviderMSP", "CustomerMSP", "AuditorMSP"}
    r = client.post("/v1/keys/client-CustomerMSP/disable", headers=auth("platform-op-token"))
    assert r.status_code == 200 and r.json()["enabled"] is False
    client.post("/v1/keys/client-CustomerMSP/enable", headers=auth("platform-op-token"))
    from pydantic import ValidationError

    from hub.config import TokenGrant

    assert TokenGrant(org="ProviderMSP", role="operator").scope == "org"  # never the default
    with pytest.raises(ValidationError, match="operator tokens only"):
        TokenGrant(org="ProviderMSP", role="provider", scope="platform")
