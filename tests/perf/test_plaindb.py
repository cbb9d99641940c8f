"""The plain-database meter of the bench (hub/bench/plaindb.py, ADR 0040) is an honest comparison only if
it does the work it claims: the device signature checked at the edge with the hub's code, one row per
(device, reading id), a repeat dropped rather than stored twice. Checked on a real PostgreSQL server."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from hub.bench import plaindb
from hub.bench.traffic import Device, messages
from tests.helpers.api import last_month

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
AUTH = {"Authorization": f"Bearer {plaindb.TOKEN}"}


@pytest.fixture
def service(postgres_server):
    url = postgres_server.create_database()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with TestClient(plaindb.create_app(dsn, pool_size=2)) as client:
        yield client


def signed(device: Device, n: int = 2, per: int = 3) -> list[dict]:
    import datetime as dt

    _period, first = last_month()
    start = dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC)
    return list(messages(device, n, per, start=start, end=start + dt.timedelta(days=1), prefix="p"))


def test_readings_are_stored_once_and_repeats_are_dropped(service):
    device = Device.new("plain-dev-1")
    assert service.post("/devices", json={"id": device.device_id, "public_key": device.public_pem},
                        headers=AUTH).status_code == 200
    first, second = signed(device)
    r = service.post("/usage", json=first, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"accepted": 3, "duplicates": []}
    again = service.post("/usage", json=first, headers=AUTH)
    assert again.status_code == 202 and again.json()["accepted"] == 0
    assert sorted(again.json()["duplicates"]) == sorted(x["id"] for x in first["readings"])
    assert service.post("/usage", json=second, headers=AUTH).json()["accepted"] == 3
    assert service.get("/count", params={"prefix": "plain-dev-"}, headers=AUTH).json() == {"readings": 6}


def test_forged_unknown_and_malformed_messages_store_nothing(service):
    device, other = Device.new("plain-dev-2"), Device.new("plain-dev-3")
    service.post("/devices", json={"id": device.device_id, "public_key": device.public_pem}, headers=AUTH)
    message = signed(device, n=1)[0]
    forged = copy.deepcopy(message)
    forged["readings"][0]["quantity"] = "1000"  # the signature no longer covers it
    assert service.post("/usage", json=forged, headers=AUTH).json() == {"code": "bad_signature"}
    unknown = signed(other, n=1)[0]
    assert service.post("/usage", json=unknown, headers=AUTH).status_code == 404
    broken = {k: v for k, v in message.items() if k != "readings"}
    assert service.post("/usage", json=broken, headers=AUTH).status_code == 422
    assert service.post("/usage", json=message).status_code == 401
    assert service.get("/count", params={"prefix": "plain-dev-"}, headers=AUTH).json() == {"readings": 0}
