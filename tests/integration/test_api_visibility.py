"""Who may do and see what: every role, with 404 (never 403) for objects of other orgs, so ids of other
parties' contracts and invoices cannot be probed; auditors read everything and write nothing."""

from __future__ import annotations

import pytest

from tests.helpers.api import auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import reading

pytestmark = pytest.mark.integration
CID = "ctr-mri-001"


@pytest.fixture
def invoice_id(client, active, device_key) -> str:
    period, _ = last_month()
    assert (
        post_usage(client, usage(device_key, "m-v", [reading("rv-1", timestamp=ts(period, 2))])).status_code
        == 202
    )
    r = client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-operator"))
    assert r.status_code == 200
    return r.json()["id"]


READ_PATHS = [
    "/v1/contracts/{cid}",
    "/v1/contracts/{cid}/usage",
    "/v1/invoices/{iid}",
    "/v1/invoices/{iid}/ubl",
    "/v1/invoices/{iid}/proof",
]


@pytest.mark.parametrize("token", ["tok-provider", "tok-customer", "tok-auditor"])
@pytest.mark.parametrize("path", READ_PATHS)
def test_parties_and_auditors_read(client, invoice_id, token, path):
    r = client.get(path.format(cid=CID, iid=invoice_id), headers=auth(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("token", ["tok-other-provider", "tok-other-customer"])
@pytest.mark.parametrize("path", READ_PATHS)
def test_other_orgs_get_404_exactly_like_an_unknown_id(client, invoice_id, token, path):
    hidden = client.get(path.format(cid=CID, iid=invoice_id), headers=auth(token))
    unknown = client.get(path.format(cid="ctr-nope", iid="inv-nope"), headers=auth("tok-provider"))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["code"] == unknown.json()["code"]
    assert hidden.json()["code"] in {"unknown_contract", "unknown_invoice"}
    assert CID not in hidden.json().get("title", "")


def test_other_orgs_see_empty_lists(client, invoice_id):
    for token in ("tok-other-provider", "tok-other-customer"):
        assert client.get("/v1/invoices", headers=auth(token)).json()["items"] == []
        assert client.get("/v1/contracts", headers=auth(token)).json()["items"] == []
    # a customer filtering by another org's contract id learns nothing either
    assert client.get(
        "/v1/invoices", params={"contract": CID}, headers=auth("tok-other-customer")
    ).json() == {"items": []}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("post", "/v1/assets", "provider"),
        ("post", "/v1/contracts", "provider"),
        ("post", "/v1/contracts/{cid}/accept", "customer"),
        ("post", "/v1/usage", "device"),
        ("post", "/v1/contracts/{cid}/periods/2026-01/close", "operator"),
        ("post", "/v1/invoices/{iid}/dispute", "customer"),
        ("post", "/v1/invoices/{iid}/credit-notes", "provider"),
        ("get", "/v1/invoices", "provider"),
        ("get", "/v1/contracts/{cid}", "provider"),
    ],
)
def test_roles_that_may_not_act_get_403_forbidden(client, invoice_id, method, path, allowed):
    denied = {"provider", "customer", "auditor", "operator", "device"} - {allowed}
    if method == "get":
        denied -= {"customer", "auditor"}
    for role in sorted(denied):
        r = getattr(client, method)(path.format(cid=CID, iid=invoice_id), headers=auth(f"tok-{role}"))
        assert r.status_code == 403, (role, r.text)
        assert r.json()["code"] == "forbidden"
        assert r.headers["content-type"].startswith("application/problem+json")


def test_auditor_writes_nothing(client, ledger, invoice_id):
    before = dict(ledger.submits)
    for method, path in [
        ("post", "/v1/assets"),
        ("post", "/v1/contracts"),
        ("post", f"/v1/contracts/{CID}/accept"),
        ("post", f"/v1/invoices/{invoice_id}/dispute"),
    ]:
        r = getattr(client, method)(path, json={}, headers=auth("tok-auditor"))
        assert r.status_code == 403, path
    assert dict(ledger.submits) == before


def test_customer_of_another_org_cannot_accept(client, device_key):
    from tests.helpers.chaincode import sample_asset, sample_contract

    _, start = last_month()
    client.post("/v1/assets", json=sample_asset(device_key), headers=auth("tok-provider"))
    assert (
        client.post(
            "/v1/contracts", json=sample_contract(start=start), headers=auth("tok-provider")
        ).status_code
        == 201
    )
    r = client.post(f"/v1/contracts/{CID}/accept", headers=auth("tok-other-customer"))
    assert r.status_code == 404 and r.json()["code"] == "unknown_contract"
    assert client.get(f"/v1/contracts/{CID}", headers=auth("tok-customer")).json()["status"] == "PROPOSED"


def test_provider_cannot_propose_for_another_org(client, device_key):
    from tests.helpers.chaincode import sample_contract

    r = client.post("/v1/contracts", json=sample_contract(provider="OtherMSP"), headers=auth("tok-provider"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_operator_of_another_org_cannot_close(client, active):
    period, _ = last_month()
    r = client.post(f"/v1/contracts/{CID}/periods/{period}/close", headers=auth("tok-other-operator"))
    assert r.status_code == 404 and r.json()["code"] == "unknown_contract"


def test_device_of_another_org_cannot_post_for_the_asset(client, ledger, active, device_key):
    period, _ = last_month()
    before = ledger.submits["RecordUsage"]
    r = post_usage(
        client, usage(device_key, "m-x", [reading("rx-1", timestamp=ts(period, 2))]), "tok-other-device"
    )
    assert r.status_code == 404 and r.json()["code"] == "unknown_asset"
    unknown = usage(device_key, "m-y", [reading("ry-1", timestamp=ts(period, 2))], device_id="no-such-device")
    r2 = post_usage(client, unknown)
    assert r2.status_code == 404 and r2.json()["code"] == "unknown_asset"
    assert ledger.submits["RecordUsage"] == before


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        ({"Authorization": "Basic abc"}, "unauthenticated"),
        ({"Authorization": "Bearer wrong"}, "invalid_token"),
        (auth("tok-expired"), "token_expired"),
    ],
)
def test_authentication_errors(client, headers, code):
    r = client.get("/v1/invoices", headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == code
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")


def test_unknown_route_and_method_are_problems(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("/v1/invoices")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
