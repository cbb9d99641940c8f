"""Late readings (ADR 0048) and a shared asset with bookings (ADR 0049), over HTTP, on both ledgers.

Hand-computed with the API.md plan (platform 500.00 flat, scans 85.00 each for the first 100, magnet hours
12.50, tax 19 %; minimum commitment 2000.00 where kept). On the embedded ledger the second clinic is its
own org (ClinicBMSP, with its own token); the Fabric test network has one customer org, so there the two
contracts share it and the test checks what each contract's invoice and proof bundle hold.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math

import pytest

from hub.audit.verify import verify_bundle
from hub.config import TokenGrant
from tests.helpers.api import TOKENS, auth, last_month, post_usage, ts, usage
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
)
from tests.helpers.story import Story, open_contract

pytestmark = pytest.mark.integration
CLINIC_B = "ClinicBMSP"
Y, Y_START = last_month()  # last month: closable now
X, X_START = last_month(dt.datetime.fromisoformat(Y_START).replace(tzinfo=dt.UTC))  # the month before


@pytest.fixture
def story_extra_orgs() -> tuple[str, ...]:
    """On the embedded ledger the second clinic is its own org (tests/scenarios/conftest.py's `story`)."""
    return (CLINIC_B,)


def _hub(story: Story):
    tokens = {**TOKENS, "tok-clinic-b": {"org": CLINIC_B, "role": "customer"}}
    return story.hub(tokens={k: TokenGrant(**v) for k, v in tokens.items()}, extra_ledger_orgs=[CLINIC_B])


def _close(client, contract_id: str, period: str) -> dict:
    r = client.post(f"/v1/contracts/{contract_id}/periods/{period}/close", headers=auth("tok-operator"))
    assert r.status_code == 200, r.text
    return r.json()


def _money(invoice: dict) -> tuple[str, str, str]:
    return invoice["subtotal"], invoice["tax"], invoice["total"]


def _proof_ok(client, invoice_id: str, token: str) -> dict:
    r = client.get(f"/v1/invoices/{invoice_id}/proof", headers=auth(token))
    assert r.status_code == 200, r.text
    bundle = r.json()
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    return bundle


def test_late_readings_are_billed_on_the_next_invoice_at_the_old_price(story: Story) -> None:
    now = dt.datetime.now(dt.UTC)
    # max lateness: just over the age of a reading of X's 25th, so a reading of X's 1st is too late
    age_25 = now - dt.datetime.fromisoformat(ts(X, 25))
    days = math.ceil(age_25 / dt.timedelta(days=1)) + 2
    with _hub(story) as client:
        contract, (key,) = open_contract(
            client, story, name="ctr-late", start=X_START,
            late_readings={"policy": "next_invoice", "max_lateness": f"P{days}D"},
        )
        cid, device = contract["id"], contract["assets"][0]

        def send(mid: str, readings: list) -> object:
            return post_usage(client, usage(key, story.id(mid), readings, device_id=device))

        assert send("m-x", [reading(story.id(f"x{i}"), "scan", "1", ts(X, 2 + i)) for i in range(10)]
                    ).status_code == 202
        x_invoice = _close(client, cid, X)
        # 10 x 85.00 + 500.00 = 1350.00 -> true-up 650.00 -> 2000.00; tax 380.00
        assert _money(x_invoice) == ("2000.00", "380.00", "2380.00")

        late = [reading(story.id("l1"), "scan", "1", ts(X, 25)),
                reading(story.id("l2"), "scan", "1", ts(X, 26)),
                reading(story.id("l3"), "scan", "1", ts(X, 27)),
                reading(story.id("l4"), "magnet_hours", "1.5", ts(X, 25, 11)),
                reading(story.id("l5"), "magnet_hours", "1.5", ts(X, 25, 12))]
        sent = send("m-late", late)
        assert sent.status_code == 202 and sent.json()["accepted"] == 5, sent.text
        too_late = send("m-old", [reading(story.id("old"), "scan", "1", ts(X, 1))])
        assert too_late.status_code == 409 and too_late.json()["code"] == "reading_too_late", too_late.text
        again = send("m-late-2", late[:2])  # a resend is a duplicate, never billed twice
        assert again.status_code == 409 and again.json()["code"] == "duplicate_reading", again.text
        assert send("m-y", [reading(story.id(f"y{i}"), "scan", "1", ts(Y, 3 + i)) for i in range(4)]
                    ).status_code == 202

        y_invoice = _close(client, cid, Y)
        assert [ln for ln in y_invoice["lines"] if "late_of" in ln] == [
            {"charge_id": "scans", "model": "graduated", "metric": "scan", "quantity": "3",
             "amount": "255.00",
             "late_of": X, "description": f"late usage {X}"},
            {"charge_id": "hours", "model": "per_unit", "metric": "magnet_hours", "quantity": "3.0",
             "amount": "37.50", "late_of": X, "description": f"late usage {X}"},
        ]
        # Y: 500.00 + 4 x 85.00 = 840.00 -> true-up 1160.00 -> 2000.00; + late 292.50 = 2292.50;
        # tax 19 % = 435.575 -> 435.58; total 2728.08
        assert _money(y_invoice) == ("2292.50", "435.58", "2728.08")
        # the closed invoice's numbers never changed
        x_now = client.get(f"/v1/invoices/{x_invoice['id']}", headers=auth("tok-customer")).json()
        for f in ("lines", "subtotal", "tax", "total", "readings", "readings_digest"):
            assert x_now[f] == x_invoice[f]
        # both proofs verify offline: X without the late readings, Y with them
        x_bundle = _proof_ok(client, x_invoice["id"], "tok-customer")
        assert {r["id"] for r in x_bundle["readings"]} == {story.id(f"x{i}") for i in range(10)}
        y_bundle = _proof_ok(client, y_invoice["id"], "tok-customer")
        assert {r["id"] for r in y_bundle["readings"]} == (
            {story.id(f"y{i}") for i in range(4)} | {r["id"] for r in late})
        ubl = client.get(f"/v1/invoices/{y_invoice['id']}/ubl", headers=auth("tok-customer"))
        assert ubl.status_code == 200 and f"late usage {X}" in ubl.text, ubl.text[:300]
        # the verifier recomputes the late lines: a changed amount or a dropped late reading is reported
        forged = copy.deepcopy(y_bundle)
        next(ln for ln in forged["invoice"]["lines"] if "late_of" in ln)["amount"] = "170.00"
        assert "line_amount" in verify_bundle(forged).failed_checks()
        dropped = copy.deepcopy(y_bundle)
        dropped["readings"] = [r for r in dropped["readings"] if r["id"] != story.id("l1")]
        assert {"missing", "late_readings"} <= verify_bundle(dropped).failed_checks()


def test_a_shared_asset_bills_two_customers_each_blind_to_the_other(story: Story) -> None:
    embedded = story.kind == "embedded"
    second, second_token = (CLINIC_B, "tok-clinic-b") if embedded else (CUSTOMER, "tok-customer")
    with _hub(story) as client:
        key = make_device_key(story.id("shared"))
        device = story.id("mri-shared")
        shared = {**sample_asset(key, device), "shared": True}
        r = client.post("/v1/assets", json=shared, headers=auth("tok-provider"))
        assert r.status_code == 201 and r.json()["shared"] is True, r.text
        a, b = story.id("ctr-a"), story.id("ctr-b")
        for cid, customer, token in ((a, CUSTOMER, "tok-customer"), (b, second, second_token)):
            body = sample_contract(id=cid, customer=customer, assets=[device], start=Y_START,
                                   minimum_commitment=None)
            assert client.post("/v1/contracts", json=body, headers=auth("tok-provider")).status_code == 201
            r = client.post(f"/v1/contracts/{cid}/accept", headers=auth(token))
            assert r.status_code == 200, r.text

        def book(bid: str, cid: str, start: str, end: str, token: str) -> dict:
            r = client.post(f"/v1/assets/{device}/bookings", headers=auth("tok-provider"),
                            json={"id": bid, "contract_id": cid, "start": start, "end": end})
            assert r.status_code == 201 and r.json()["status"] == "PROPOSED", r.text
            r = client.post(f"/v1/assets/{device}/bookings/{bid}/accept", headers=auth(token))
            assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
            return r.json()

        booked_a = book("bk-a", a, ts(Y, 2, 0), ts(Y, 4, 0), "tok-customer")
        book("bk-b", b, ts(Y, 4, 0), ts(Y, 6, 0), second_token)
        overlap = client.post(f"/v1/assets/{device}/bookings", headers=auth("tok-provider"),
                              json={"id": "bk-c", "contract_id": b, "start": ts(Y, 3), "end": ts(Y, 5)})
        assert overlap.status_code == 409 and overlap.json()["code"] == "booking_overlap"
        # the accepted booking needed both parties' endorsements
        tx = story.ledger.tx(booked_a["accepted_tx"])
        assert {PROVIDER, CUSTOMER} <= {e.msp_id for e in tx.endorsements}

        def send(mid: str, readings: list) -> object:
            return post_usage(client, usage(key, story.id(mid), readings, device_id=device))

        ra = [reading(story.id("ra1"), "scan", "1", ts(Y, 2)),
              reading(story.id("ra2"), "scan", "1", ts(Y, 3))]
        rb = [reading(story.id("rb1"), "scan", "1", ts(Y, 4)),
              reading(story.id("rb2"), "scan", "1", ts(Y, 5)),
              reading(story.id("rb3"), "scan", "1", ts(Y, 5, 11)),
              reading(story.id("rb4"), "magnet_hours", "2", ts(Y, 5, 12))]
        assert send("ma", ra).status_code == 202
        assert send("mb", rb).status_code == 202
        outside = send("mx", [reading(story.id("rx"), "scan", "1", ts(Y, 8))])
        assert outside.status_code == 409 and outside.json()["code"] == "no_booking", outside.text

        inv_a, inv_b = _close(client, a, Y), _close(client, b, Y)
        # A: 500.00 + 2 x 85.00 = 670.00, tax 127.30, total 797.30
        assert _money(inv_a) == ("670.00", "127.30", "797.30")
        # B: 500.00 + 3 x 85.00 + 2 x 12.50 = 780.00, tax 148.20, total 928.20
        assert _money(inv_b) == ("780.00", "148.20", "928.20")

        bundle_a = _proof_ok(client, inv_a["id"], "tok-customer")
        bundle_b = _proof_ok(client, inv_b["id"], second_token)
        assert {r["id"] for r in bundle_a["readings"]} == {r["id"] for r in ra}
        assert {r["id"] for r in bundle_b["readings"]} == {r["id"] for r in rb}
        text_a, text_b = json.dumps(bundle_a), json.dumps(bundle_b)
        for r in rb:
            assert r["id"] not in text_a
        for r in ra:
            assert r["id"] not in text_b
        assert b not in text_a and a not in text_b
        if story.kind != "embedded":
            return
        # two customer orgs: each sees its own contract, bookings and invoice, and nothing of the other's
        for token, mine, other, inv_other in (("tok-customer", a, b, inv_b), (second_token, b, a, inv_a)):
            for path in (f"/v1/contracts/{other}", f"/v1/contracts/{other}/usage?period={Y}",
                         f"/v1/contracts/{other}/readings.csv?period={Y}", f"/v1/invoices/{inv_other['id']}",
                         f"/v1/invoices/{inv_other['id']}/proof"):
                assert client.get(path, headers=auth(token)).status_code == 404, path
            listed = client.get("/v1/invoices", headers=auth(token)).json()["items"]
            assert {i["contract_id"] for i in listed} == {mine}
            bookings = client.get(f"/v1/assets/{device}/bookings", headers=auth(token)).json()["items"]
            assert {bk["contract_id"] for bk in bookings} == {mine}
            hidden = client.get(f"/v1/assets/{device}/bookings/{'bk-b' if mine == a else 'bk-a'}",
                                headers=auth(token))
            assert hidden.status_code == 404 and hidden.json()["code"] == "unknown_booking"
        # the provider sees both bookings
        listed = client.get(f"/v1/assets/{device}/bookings", headers=auth("tok-provider")).json()["items"]
        assert {bk["contract_id"] for bk in listed} == {a, b}
