"""Bookings of a shared asset and late readings through the API: every refusal has its stable code and
writes nothing (ledger height and the asset's bookings unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.api import (
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    ts,
    usage,
)
from tests.helpers.chaincode import make_device_key, reading, sample_asset, sample_contract

pytestmark = pytest.mark.integration
PERIOD, START = last_month()
DEVICE = "mri-shared-01"
CID = "ctr-shared-a"


@pytest.fixture
def shared(tmp_path: Path):
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    with hub_client(hub_settings(tmp_path), ledger, background=False) as client:
        key = make_device_key("shared")
        r = client.post("/v1/assets", json={**sample_asset(key, DEVICE), "shared": True},
                        headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
        # a contract that ends with the current month
        contract = sample_contract(id=CID, assets=[DEVICE], start=START, end=_last_day())
        assert client.post("/v1/contracts", json=contract, headers=auth("tok-provider")).status_code == 201
        assert client.post(f"/v1/contracts/{CID}/accept", headers=auth("tok-customer")).status_code == 200
        r = client.post(f"/v1/assets/{DEVICE}/bookings", headers=auth("tok-customer"),
                        json={"id": "bk-1", "contract_id": CID, "start": ts(PERIOD, 2, 0),
                              "end": ts(PERIOD, 4, 0)})
        assert r.status_code == 201 and r.json()["proposed_by"] == "CustomerMSP", r.text
        r = client.post(f"/v1/assets/{DEVICE}/bookings/bk-1/accept", headers=auth("tok-provider"))
        assert r.status_code == 200 and r.json()["status"] == "ACTIVE", r.text
        yield client, ledger, key


def _last_day() -> str:
    import datetime as dt

    def next_first(day: dt.date) -> dt.date:
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    return (next_first(next_first(dt.date.fromisoformat(START))) - dt.timedelta(days=1)).isoformat()


def _state(client, ledger) -> tuple:
    """The asset's bookings and the period's readings as the ledger holds them (an idempotent replay
    commits an empty transaction, so the height alone is not the measure of 'nothing written')."""
    listed = client.get(f"/v1/assets/{DEVICE}/bookings", headers=auth("tok-provider")).json()
    return listed, _readings(ledger)


def _readings(ledger) -> object:
    arg = json.dumps({"contract_id": CID, "period": PERIOD})
    return json.loads(ledger.evaluate("GetReadings", [arg], as_org="ProviderMSP"))["readings"]


@pytest.mark.parametrize(
    ("name", "token", "body", "status", "code"),
    [
        ("overlap", "tok-provider", {"start": ts(PERIOD, 3, 12), "end": ts(PERIOD, 5, 0)}, 409,
         "booking_overlap"),
        ("overlap_inside", "tok-customer", {"start": ts(PERIOD, 2, 10), "end": ts(PERIOD, 2, 11)}, 409,
         "booking_overlap"),
        ("before_contract", "tok-provider", {"start": "2000-01-01T00:00:00Z", "end": ts(PERIOD, 1, 12)}, 400,
         "booking_outside_contract"),
        ("after_contract", "tok-provider", {"start": ts(PERIOD, 20), "end": "2099-01-01T00:00:00Z"}, 400,
         "booking_outside_contract"),
        ("end_before_start", "tok-provider", {"start": ts(PERIOD, 10), "end": ts(PERIOD, 9)}, 400,
         "invalid_argument"),
        ("same_id_other_window", "tok-provider",
         {"id": "bk-1", "start": ts(PERIOD, 10), "end": ts(PERIOD, 11)}, 409, "booking_exists"),
        ("unknown_contract", "tok-provider", {"contract_id": "ctr-nope"}, 404, "unknown_contract"),
        ("stranger_customer", "tok-other-customer", {}, 404, "unknown_contract"),
        ("device_role", "tok-device", {}, 403, "forbidden"),
        ("auditor_role", "tok-auditor", {}, 403, "forbidden"),
    ],
)
def test_bad_bookings_are_refused_and_write_nothing(shared, name, token, body, status, code) -> None:
    client, ledger, _ = shared
    before, height = _state(client, ledger), ledger.height()
    request = {"id": "bk-new", "contract_id": CID, "start": ts(PERIOD, 10), "end": ts(PERIOD, 11), **body}
    r = client.post(f"/v1/assets/{DEVICE}/bookings", json=request, headers=auth(token))
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (_state(client, ledger), ledger.height()) == (before, height)  # refused before any commit


def test_the_proposer_cannot_accept_its_own_booking(shared) -> None:
    client, ledger, _ = shared
    r = client.post(f"/v1/assets/{DEVICE}/bookings", headers=auth("tok-provider"),
                    json={"id": "bk-2", "contract_id": CID, "start": ts(PERIOD, 10), "end": ts(PERIOD, 11)})
    assert r.status_code == 201
    before = _state(client, ledger)
    r = client.post(f"/v1/assets/{DEVICE}/bookings/bk-2/accept", headers=auth("tok-provider"))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = client.post(f"/v1/assets/{DEVICE}/bookings/bk-2/accept", headers=auth("tok-other-customer"))
    assert (r.status_code, r.json()["code"]) == (404, "unknown_booking")
    assert _state(client, ledger) == before
    # proposing the same booking again is a no-op answering the stored record
    same = {"id": "bk-2", "contract_id": CID, "start": ts(PERIOD, 10), "end": ts(PERIOD, 11)}
    again = client.post(f"/v1/assets/{DEVICE}/bookings", headers=auth("tok-provider"), json=same)
    assert again.status_code == 201 and again.json()["status"] == "PROPOSED"
    assert _state(client, ledger) == before


def test_readings_outside_any_booking_are_refused_and_write_nothing(shared) -> None:
    client, ledger, key = shared
    before = _readings(ledger)
    out = usage(key, "m-out", [reading("r-out", timestamp=ts(PERIOD, 5))], device_id=DEVICE)
    r = post_usage(client, out)
    assert (r.status_code, r.json()["code"]) == (409, "no_booking"), r.text
    assert r.json()["reading_ids"] == ["r-out"]
    assert _readings(ledger) == before
    r = post_usage(client, usage(key, "m-in", [reading("r-in", timestamp=ts(PERIOD, 3))], device_id=DEVICE))
    assert r.status_code == 202, r.text


def test_a_late_reading_under_the_reject_policy_is_period_closed_and_writes_nothing(shared) -> None:
    client, ledger, key = shared
    closed = client.post(f"/v1/contracts/{CID}/periods/{PERIOD}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    before = _readings(ledger)
    late = usage(key, "m-late", [reading("r-late", timestamp=ts(PERIOD, 3))], device_id=DEVICE)
    r = post_usage(client, late)
    assert (r.status_code, r.json()["code"]) == (409, "period_closed"), r.text
    assert _readings(ledger) == before


def test_an_invalid_late_policy_is_refused_at_proposal(shared) -> None:
    client, ledger, _ = shared
    before = ledger.height()
    body = sample_contract(id="ctr-bad-late", assets=[DEVICE], start=START,
                           late_readings={"policy": "next_invoice", "max_lateness": "35 days"})
    r = client.post("/v1/contracts", json=body, headers=auth("tok-provider"))
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (400, "invalid_argument", "late_readings")
    assert ledger.height() == before


def test_a_lost_answer_for_a_shared_asset_is_rebuilt_from_the_ledger(shared) -> None:
    """The commit happened, its answer was lost: the retry gets the first answer, routed by the booking."""
    client, ledger, key = shared
    ledger.fail_after.append("unknown")
    ledger.hide_tx = True
    m = usage(key, "m-lost", [reading("r-lost-1", timestamp=ts(PERIOD, 2)),
                              reading("r-lost-2", timestamp=ts(PERIOD, 3))], device_id=DEVICE)
    lost = post_usage(client, m)
    assert (lost.status_code, lost.json()["code"]) == (503, "commit_status_unknown"), lost.text
    ledger.hide_tx = False
    retry = post_usage(client, m)
    assert retry.status_code == 202, retry.text
    assert retry.json()["accepted"] == 2 and retry.json()["duplicates"] == []
    assert ledger.submits["RecordUsage"] == 2  # the lost commit and the refused repeat; nothing twice
    assert sorted(r["id"] for r in _readings(ledger)) == ["r-lost-1", "r-lost-2"]
