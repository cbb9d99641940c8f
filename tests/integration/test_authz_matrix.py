"""Authorisation matrix: every endpoint of the app x every caller, one exact (status, code) per cell.

The endpoints come from the app's own OpenAPI document, so a new route without a row fails
`test_every_route_has_a_row`. The "who" of each row is API.md's column; a caller outside it gets 403
`forbidden`, another org's party gets 404 (objects of other orgs are invisible, ADR 0008), no token 401
`unauthenticated`, an unknown token 401 `invalid_token`, an expired one 401 `token_expired`.
Operators are org-scoped too (ADR 0029): the provider's operator, the customer's operator and an unrelated
org's operator each reach only their own org's deliveries and keys (another org's is the unknown id's 404);
only a token configured with `"scope": "platform"` reaches every org's.
Allowed callers get the route's real answer on the real embedded ledger (200/201/...), or its specific
refusal when the request is deliberately one the route must refuse after authorisation (noted per row).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.config import TokenGrant
from hub.delivery.service import install
from tests.helpers.api import (
    TOKENS,
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    setup_contract,
)
from tests.helpers.chaincode import CUSTOMER, PROVIDER, make_device_key, sample_contract

pytestmark = pytest.mark.integration

CALLERS = {
    "provider": "tok-provider",
    "customer": "tok-customer",
    "auditor": "tok-auditor",
    "operator": "tok-operator",  # ProviderMSP's
    "customer_operator": "tok-customer-operator",
    "other_operator": "tok-other-operator",
    "platform_operator": "tok-platform-operator",
    "device": "tok-device",
    "other_provider": "tok-other-provider",
    "other_customer": "tok-other-customer",
    "none": None,
    "bad": "tok-does-not-exist",
    "expired": "tok-expired",
}
ANON = {"none": (401, "unauthenticated"), "bad": (401, "invalid_token"), "expired": (401, "token_expired")}
OK = (200, None)
FORBIDDEN = (403, "forbidden")
OPERATORS = ("operator", "customer_operator", "other_operator", "platform_operator")
PLATFORM = {"tok-platform-operator": TokenGrant(org="HubOperatorMSP", role="operator", scope="platform")}
EVERYONE = {c: OK for c in CALLERS}
WEBHOOK_MANAGERS = ("provider", "customer", "other_provider", "other_customer", *OPERATORS)


def row(allowed: dict[str, tuple[int, str | None]]) -> dict[str, tuple[int, str | None]]:
    """Complete a row: callers not named are refused by role (403); anonymous ones by authentication."""
    out = {caller: allowed.get(caller, FORBIDDEN) for caller in CALLERS}
    out.update(ANON)
    return out


def parties(
    ok: tuple[int, str | None],
    hidden: str,
    *,
    auditor: bool = True,
    provider: bool = True,
    customer: bool = True,
) -> dict[str, tuple[int, str | None]]:
    """Parties (and the auditor) see it; the other org's provider/customer get 404 `hidden`."""
    allowed: dict[str, tuple[int, str | None]] = {}
    if provider:
        allowed.update(provider=ok, other_provider=(404, hidden))
    if customer:
        allowed.update(customer=ok, other_customer=(404, hidden))
    if auditor:
        allowed["auditor"] = ok
    return row(allowed)


def owned(
    ok: tuple[int, str | None], hidden: str, *, owner: tuple[str, ...], strangers: tuple[str, ...]
) -> dict[str, tuple[int, str | None]]:
    """An object one org owns: its callers (and the platform operator) get `ok`, callers of other orgs with
    the right role get the unknown id's 404 `hidden`; everyone else is refused by role."""
    allowed = {caller: ok for caller in (*owner, "platform_operator")}
    allowed.update({caller: (404, hidden) for caller in strangers})
    return row(allowed)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("authz")
    ledger = ControlledLedger(embedded_ledger(tmp / "ledger"))

    def configure(services: Any) -> None:
        install(services, start=False)

    # the matrix presents no, bad and expired tokens on every route from one address on purpose: the
    # failed-login limit (on by default, tested in test_hostile_ratelimit.py) is off here
    tokens = {**{k: TokenGrant(**v) for k, v in TOKENS.items()}, **PLATFORM}
    settings = hub_settings(tmp, tokens=tokens, auth_failures_per_minute=0)
    with hub_client(settings, ledger, background=False, configure=configure, areas=("keys",)) as client:
        contract = setup_contract(client, make_device_key("authz"))
        assert contract["erp"] == {"provider": "sap-soap", "customer": "oracle-rest"}
        closed, _ = last_month()
        r = client.post(
            f"/v1/contracts/{contract['id']}/periods/{closed}/close", headers=auth("tok-operator")
        )
        assert r.status_code == 200, r.text
        # the outbox rows of the invoice: the receivable is ProviderMSP's, the payable CustomerMSP's
        client.app.state.services.delivery.consume_events()
        rows = client.app.state.services.delivery.list(invoice_id=r.json()["id"])
        assert {(d["target"], d["org"]) for d in rows} == {("provider", PROVIDER), ("customer", CUSTOMER)}
        yield (
            client,
            {
                "contract": contract["id"],
                "invoice": r.json()["id"],
                "period": closed,
                "asset": contract["assets"][0],
                "provider_delivery": next(d["id"] for d in rows if d["org"] == PROVIDER),
                "customer_delivery": next(d["id"] for d in rows if d["org"] == CUSTOMER),
            },
        )
    ledger.close()


def matrix(
    ids: dict[str, str],
) -> dict[tuple[str, str], tuple[dict[str, Any], dict[str, tuple[int, str | None]]]]:
    """(method, OpenAPI path) -> (request, expected per caller)."""
    c, inv, p = ids["contract"], ids["invoice"], ids["period"]
    contract_body = sample_contract(id="ctr-authz-new", assets=["authz-no-such-asset"])
    return {
        ("get", "/healthz"): ({"path": "/healthz"}, EVERYONE),
        ("get", "/readyz"): ({"path": "/readyz"}, EVERYONE),
        ("get", "/metrics"): ({"path": "/metrics"}, EVERYONE),
        # a fresh, valid asset per caller; its public key is not a P-256 PEM -> the ledger refuses it
        ("post", "/v1/assets"): (
            {"path": "/v1/assets", "json": {"id": "authz-asset", "public_key": "nope"}},
            row({"provider": (400, "bad_public_key"), "other_provider": (400, "bad_public_key")}),
        ),
        ("get", "/v1/assets/{asset_id}"): (
            {"path": f"/v1/assets/{ids['asset']}"},
            row({"provider": OK, "auditor": OK, "other_provider": (404, "unknown_asset")}),
        ),
        # bookings of shared assets (ADR 0049): the matrix's asset is not shared, so a party's proposal is
        # refused after authorisation (nothing written); no booking exists, so every reader gets 404
        ("post", "/v1/assets/{asset_id}/bookings"): (
            {"path": f"/v1/assets/{ids['asset']}/bookings",
             "json": {"id": "bk-1", "contract_id": c, "start": "2026-11-02T00:00:00Z",
                      "end": "2026-11-03T00:00:00Z"}},
            parties((409, "asset_not_shared"), "unknown_contract", auditor=False),
        ),
        ("post", "/v1/assets/{asset_id}/bookings/{booking_id}/accept"): (
            {"path": f"/v1/assets/{ids['asset']}/bookings/bk-none/accept"},
            parties((404, "unknown_booking"), "unknown_booking", auditor=False),
        ),
        ("get", "/v1/assets/{asset_id}/bookings/{booking_id}"): (
            {"path": f"/v1/assets/{ids['asset']}/bookings/bk-none"},
            parties((404, "unknown_booking"), "unknown_booking"),
        ),
        ("get", "/v1/assets/{asset_id}/bookings"): (
            {"path": f"/v1/assets/{ids['asset']}/bookings"},
            row({k: OK for k in ("provider", "customer", "auditor", "other_provider", "other_customer")}),
        ),
        ("get", "/v1/contracts"): (
            {"path": "/v1/contracts"},
            row({k: OK for k in ("provider", "customer", "auditor", "other_provider", "other_customer")}),
        ),
        # an asset nobody registered: the provider gets the ledger's refusal, another org is not this provider
        ("post", "/v1/contracts"): (
            {"path": "/v1/contracts", "json": contract_body},
            row({"provider": (404, "unknown_asset"), "other_provider": FORBIDDEN}),
        ),
        ("get", "/v1/contracts/{contract_id}"): (
            {"path": f"/v1/contracts/{c}"},
            parties(OK, "unknown_contract"),
        ),
        ("post", "/v1/contracts/{contract_id}/accept"): (
            {"path": f"/v1/contracts/{c}/accept"},
            row({"customer": OK, "other_customer": (404, "unknown_contract")}),
        ),  # accepting again: no-op
        ("post", "/v1/usage"): ({"path": "/v1/usage", "json": {}}, row({"device": (422, "invalid_request")})),
        ("get", "/v1/contracts/{contract_id}/usage"): (
            {"path": f"/v1/contracts/{c}/usage"},
            parties(OK, "unknown_contract"),
        ),
        ("get", "/v1/contracts/{contract_id}/usage/series"): (
            {"path": f"/v1/contracts/{c}/usage/series"},
            parties(OK, "unknown_contract"),
        ),
        # amendments (ADR 0046): an effective instant in the past is refused by the ledger after
        # authorisation; an unknown amendment id is 404 to the parties, the contract 404 to other orgs
        ("post", "/v1/contracts/{contract_id}/amendments"): (
            {"path": f"/v1/contracts/{c}/amendments",
             "json": {"id": "am-authz", "effective_from": "2020-01-01T00:00:00Z", "plan": {"maximum": None}}},
            row({"provider": (409, "amendment_in_past"), "other_provider": (404, "unknown_contract")}),
        ),
        ("get", "/v1/contracts/{contract_id}/amendments/{amendment_id}"): (
            {"path": f"/v1/contracts/{c}/amendments/no-such"},
            parties((404, "unknown_amendment"), "unknown_contract"),
        ),
        **{
            ("post", f"/v1/contracts/{{contract_id}}/amendments/{{amendment_id}}/{answer}"): (
                {"path": f"/v1/contracts/{c}/amendments/no-such/{answer}"},
                row({"customer": (404, "unknown_amendment"), "other_customer": (404, "unknown_contract")}),
            )
            for answer in ("accept", "reject")
        },
        ("get", "/v1/contracts/{contract_id}/history"): (
            {"path": f"/v1/contracts/{c}/history"},
            parties(OK, "unknown_contract"),
        ),
        ("get", "/v1/contracts/{contract_id}/periods/{period}/preview"): (
            {"path": f"/v1/contracts/{c}/periods/{p}/preview"},
            parties(OK, "unknown_contract"),
        ),
        # a party's operator closes (again: the same invoice); other orgs' operators do not see the contract
        ("post", "/v1/contracts/{contract_id}/periods/{period}/close"): (
            {"path": f"/v1/contracts/{c}/periods/{p}/close"},
            row({"operator": OK, "customer_operator": OK, "other_operator": (404, "unknown_contract"),
                 "platform_operator": (404, "unknown_contract")}),
        ),
        ("get", "/v1/invoices"): (
            {"path": "/v1/invoices"},
            row({k: OK for k in ("provider", "customer", "auditor", "other_provider", "other_customer")}),
        ),
        ("get", "/v1/invoices/{invoice_id}"): (
            {"path": f"/v1/invoices/{inv}"},
            parties(OK, "unknown_invoice"),
        ),
        ("get", "/v1/invoices/{invoice_id}/proof"): (
            {"path": f"/v1/invoices/{inv}/proof"},
            parties(OK, "unknown_invoice"),
        ),
        ("get", "/v1/invoices/{invoice_id}/ubl"): (
            {"path": f"/v1/invoices/{inv}/ubl"},
            parties(OK, "unknown_invoice"),
        ),
        # an amount above the invoice total: refused by the ledger after authorisation
        ("post", "/v1/invoices/{invoice_id}/credit-notes"): (
            {"path": f"/v1/invoices/{inv}/credit-notes", "json": {"reason": "x", "amount": "999999999"}},
            row({"provider": (400, "invalid_argument"), "other_provider": (404, "unknown_invoice")}),
        ),
        ("post", "/v1/invoices/{invoice_id}/dispute"): (
            {"path": f"/v1/invoices/{inv}/dispute", "json": {"reason": ""}},
            row({"customer": (422, "invalid_request"), "other_customer": (422, "invalid_request")}),
        ),
        # lists are filtered by org (test_lists_never_show_another_orgs_objects checks the content)
        ("get", "/v1/deliveries"): (
            {"path": "/v1/deliveries"},
            row({k: OK for k in ("provider", "customer", "other_provider", "other_customer", *OPERATORS)}),
        ),
        # the SAP receivable: ProviderMSP's; every other org gets the unknown id's 404
        ("get", "/v1/deliveries/{delivery_id}"): (
            {"path": f"/v1/deliveries/{ids['provider_delivery']}"},
            owned(OK, "delivery_not_found", owner=("provider", "operator"),
                  strangers=("customer", "other_provider", "other_customer", "customer_operator",
                             "other_operator")),
        ),
        # the Oracle payable: CustomerMSP's; its operator passes authorisation and learns it is not dead
        ("post", "/v1/deliveries/{delivery_id}/retry"): (
            {"path": f"/v1/deliveries/{ids['customer_delivery']}/retry"},
            owned((409, "delivery_not_dead_lettered"), "delivery_not_found", owner=("customer_operator",),
                  strangers=("operator", "other_operator")),
        ),
        ("get", "/v1/audit/verify"): (
            {"path": "/v1/audit/verify"},
            row({"auditor": OK, **{k: OK for k in OPERATORS}}),
        ),
        ("get", "/v1/keys"): ({"path": "/v1/keys"}, row({k: OK for k in OPERATORS})),
        ("get", "/v1/keys/{name}"): (
            {"path": "/v1/keys/endorser-CustomerMSP"},
            owned(OK, "unknown_key", owner=("customer_operator",), strangers=("operator", "other_operator")),
        ),
        ("post", "/v1/keys/{name}/rotate"): (
            {"path": "/v1/keys/endorser-ProviderMSP/rotate"},
            owned(OK, "unknown_key", owner=("operator",), strangers=("customer_operator", "other_operator")),
        ),
        # disabling an endorser key stops the ledger for every party: only its own org's operator may
        ("post", "/v1/keys/{name}/disable"): (
            {"path": "/v1/keys/endorser-CustomerMSP/disable"},
            owned(OK, "unknown_key", owner=("customer_operator",), strangers=("operator", "other_operator")),
        ),
        ("post", "/v1/keys/{name}/enable"): (
            {"path": "/v1/keys/endorser-CustomerMSP/enable"},
            owned(OK, "unknown_key", owner=("customer_operator",), strangers=("operator", "other_operator")),
        ),
        ("get", "/v1/contracts/{contract_id}/alert-rules"): (
            {"path": f"/v1/contracts/{c}/alert-rules"},
            parties(OK, "unknown_contract", auditor=False),
        ),
        ("put", "/v1/contracts/{contract_id}/alert-rules"): (
            {"path": f"/v1/contracts/{c}/alert-rules", "json": {"budget": "100.00"}},
            parties(OK, "unknown_contract", auditor=False),
        ),
        ("get", "/v1/alerts"): ({"path": "/v1/alerts"}, parties(OK, "")),
        # bank statements (ADR 0041): operators import (a JSON body is refused after authorisation: 415);
        # the queue is each org's own (a list, filtered), resolved by its provider or operators
        ("post", "/v1/bank-statements"): (
            {"path": "/v1/bank-statements", "json": {}},
            row({k: (415, "unsupported_media_type") for k in OPERATORS}),
        ),
        ("get", "/v1/bank-statements/queue"): (
            {"path": "/v1/bank-statements/queue"},
            row({"provider": OK, "other_provider": OK, **{k: OK for k in OPERATORS}}),
        ),
        ("put", "/v1/contracts/{contract_id}/mandate"): (
            {"path": f"/v1/contracts/{c}/mandate", "json": {
                "debtor_org": CUSTOMER, "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
                "mandate_id": "MNDT-1", "signed_on": "2026-10-01"}},
            row({"provider": OK, "other_provider": (404, "unknown_contract")}),
        ),
        ("get", "/v1/contracts/{contract_id}/mandate"): (
            {"path": f"/v1/contracts/{c}/mandate"},
            parties(OK, "unknown_contract", auditor=False),
        ),
        ("get", "/v1/contracts/{contract_id}/prepaid"): (
            {"path": f"/v1/contracts/{c}/prepaid"},
            parties(OK, "unknown_contract"),
        ),
        ("post", "/v1/contracts/{contract_id}/prepaid/top-ups"): (
            {"path": f"/v1/contracts/{c}/prepaid/top-ups",
             "json": {"top_up_id": "t-1", "amount": "1.00", "evidence": "matrix"}},
            row({"operator": OK, "customer_operator": OK, "other_operator": (404, "unknown_contract"),
                 "platform_operator": (404, "unknown_contract")}),  # a hub operator is no party
        ),
        # refunding a prepaid balance (ADR 0051): the provider's side only; the contract here has not ended
        ("post", "/v1/contracts/{contract_id}/prepaid/refund"): (
            {"path": f"/v1/contracts/{c}/prepaid/refund"},
            row({"provider": (409, "contract_not_ended"), "operator": (409, "contract_not_ended"),
                 "customer_operator": (403, "forbidden"), "other_provider": (404, "unknown_contract"),
                 "other_operator": (404, "unknown_contract"),
                 "platform_operator": (404, "unknown_contract")}),
        ),
        ("post", "/v1/bank-statements/entries/{entry_id}/resolve"): (
            {"path": "/v1/bank-statements/entries/no-such-entry/resolve", "json": {"dismiss": True}},
            row({k: (404, "unknown_bank_entry") for k in ("provider", "other_provider", *OPERATORS)}),
        ),
        # the portal's chart series, role views and export (ADR 0044)
        **{
            ("get", f"/v1/contracts/{{contract_id}}/{tail}"): (
                {"path": f"/v1/contracts/{c}/{tail}"}, parties(OK, "unknown_contract"))
            for tail in ("usage/cost-series", "usage/assets", "invoice-history", "readings.csv")
        },
        ("post", "/v1/invoices/{invoice_id}/verification"): (
            {"path": f"/v1/invoices/{inv}/verification"}, parties(OK, "unknown_invoice")),
        ("get", "/v1/portal/me"): (
            {"path": "/v1/portal/me"},
            row({caller: OK for caller in ("provider", "customer", "auditor", *OPERATORS, "other_provider",
                                           "other_customer")})),
        ("get", "/v1/portal/provider"): (
            {"path": "/v1/portal/provider"}, row({"provider": OK, "other_provider": OK})),
        ("get", "/v1/portal/audit"): ({"path": "/v1/portal/audit"}, row({"auditor": OK})),
        # lifecycle webhooks (ADR 0053): each org's own subscriptions; an unknown event type is refused after
        # authorisation, another org's (or no) subscription id is the unknown id's 404
        ("post", "/v1/webhooks"): (
            {"path": "/v1/webhooks", "json": {"url": "https://hooks.example.com/x", "secret": "x" * 16,
                                              "events": ["invoice.eaten"]}},
            row({k: (422, "unknown_event_type") for k in WEBHOOK_MANAGERS})),
        ("get", "/v1/webhooks"): ({"path": "/v1/webhooks"}, row({k: OK for k in WEBHOOK_MANAGERS})),
        ("delete", "/v1/webhooks/{subscription_id}"): (
            {"path": "/v1/webhooks/whs-no-such-subscription"},
            row({k: (404, "unknown_webhook") for k in WEBHOOK_MANAGERS})),
    }


def test_every_route_has_a_row(hub) -> None:
    client, ids = hub
    routes = {(method, path) for path, ops in client.app.openapi()["paths"].items() for method in ops}
    rows = set(matrix(ids))
    assert routes - rows == set(), f"routes without an authorisation row: {sorted(routes - rows)}"
    assert rows - routes == set(), f"rows for routes that no longer exist: {sorted(rows - routes)}"


def test_authorisation_matrix(hub) -> None:
    client, ids = hub
    wrong = []
    cells = 0
    for (method, path), (request, expected) in matrix(ids).items():
        assert set(expected) == set(CALLERS)
        for caller, token in CALLERS.items():
            status, code = expected[caller]
            if caller in ("other_provider", "other_customer") and code == "":
                code = None  # lists are filtered by org, never refused
                status = 200
            headers = auth(token) if token else {}
            kwargs = {"json": request["json"]} if "json" in request else {}
            if "json" in request and isinstance(request["json"], dict) and "id" in request["json"]:
                kwargs = {"json": {**request["json"], "id": f"{request['json']['id']}-{caller}"}}
                if path == "/v1/contracts":
                    kwargs["json"]["id"] = request["json"]["id"]
            r = client.request(method.upper(), request["path"], headers=headers, **kwargs)
            cells += 1
            got_code = None
            if r.headers.get("content-type", "").startswith("application/problem+json"):
                got_code = r.json().get("code")
            elif r.status_code >= 400:
                got_code = "<not problem+json>"
            if (r.status_code, got_code) != (status, code):
                wrong.append(
                    f"{method.upper()} {path} as {caller}: expected {status} {code}, "
                    f"got {r.status_code} {got_code} {r.text[:120]!r}"
                )
    assert cells >= 300
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong)


def test_lists_never_show_another_orgs_objects(hub) -> None:
    client, ids = hub
    for token in ("tok-other-provider", "tok-other-customer"):
        assert client.get("/v1/invoices", headers=auth(token)).json()["items"] == []
        body = json.dumps(client.get("/v1/contracts", headers=auth(token)).json())
        assert ids["contract"] not in body


@pytest.mark.parametrize(
    ("token", "orgs"),
    [
        ("tok-provider", {PROVIDER}),
        ("tok-customer", {CUSTOMER}),
        ("tok-operator", {PROVIDER}),
        ("tok-customer-operator", {CUSTOMER}),
        ("tok-other-operator", set()),
        ("tok-platform-operator", {PROVIDER, CUSTOMER}),
    ],
)
def test_operators_list_only_their_own_orgs_deliveries_and_keys(hub, token: str, orgs: set[str]) -> None:
    client, ids = hub
    deliveries = client.get(f"/v1/deliveries?invoice={ids['invoice']}", headers=auth(token)).json()["items"]
    assert {d["org"] for d in deliveries} == orgs
    if token in ("tok-provider", "tok-customer"):
        return
    keys = client.get("/v1/keys", headers=auth(token)).json()["keys"]
    everyone = {PROVIDER, CUSTOMER, "AuditorMSP"}
    assert {k["org"] for k in keys} == (everyone if "platform" in token else orgs)
    if orgs and "platform" not in token:
        (org,) = orgs
        assert {k["name"] for k in keys} == {f"ca-{org}", f"endorser-{org}", f"client-{org}"} | (
            {f"documents-{org}"} if org == PROVIDER else set())
