# ruff: noqa: F401, F811 - pytest fixtures are imported from tests.helpers.api and requested by name
"""Audit through the hub: the proof endpoint serves bundles that verify offline, and `GET /v1/audit/verify`
reports on the whole embedded ledger (auditor and operator only), including a block corrupted on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hub.audit.verify import verify_bundle
from tests.helpers.api import (
    active,
    auth,
    client,
    device_key,
    last_month,
    ledger,
    post_usage,
    ts,
    usage,
)
from tests.helpers.chaincode import CONTRACT_ID, reading

pytestmark = pytest.mark.integration


def _invoice(client: Any, device_key: Any) -> dict[str, Any]:
    period, _ = last_month()
    m1 = usage(
        device_key,
        "m-a1",
        [
            reading("ra-1", timestamp=ts(period, 3)),
            reading("ra-2", "magnet_hours", "0.75", ts(period, 3, 11)),
        ],
    )
    m2 = usage(
        device_key,
        "m-a2",
        [reading("ra-3", timestamp=ts(period, 9)), reading("ra-4", "peak_kw", "41.5", ts(period, 9, 12))],
    )
    for m in (m1, m2):
        r = post_usage(client, m)
        assert r.status_code == 202, r.text
    closed = client.post(f"/v1/contracts/{CONTRACT_ID}/periods/{period}/close", headers=auth("tok-operator"))
    assert closed.status_code == 200, closed.text
    return closed.json()


def test_proof_endpoint_serves_a_bundle_that_verifies(client, active, device_key) -> None:
    invoice = _invoice(client, device_key)
    for token in ("tok-auditor", "tok-customer", "tok-provider"):
        r = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth(token))
        assert r.status_code == 200, r.text
        assert invoice["id"] in r.headers["content-disposition"]
        bundle = r.json()
        assert bundle["invoice"]["total"] == invoice["total"]
        assert len(bundle["readings"]) == 4
        report = verify_bundle(bundle)
        assert report.ok, report.summary()
    hidden = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-other-customer"))
    assert hidden.status_code == 404


@pytest.mark.parametrize("token", ["tok-auditor", "tok-operator"])
def test_verify_endpoint_on_a_good_ledger(client, active, device_key, token) -> None:
    _invoice(client, device_key)
    r = client.get("/v1/audit/verify", headers=auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["problems"] == []
    assert body["checked"]["blocks"] >= 7  # genesis, asset, propose, accept, 2 x usage, close
    assert body["checked"]["transactions"] == body["checked"]["valid_transactions"] >= 6
    assert body["checked"]["state_keys"] > 0
    assert body["network_id"] == client.app.state.services.ledger.network_id


@pytest.mark.parametrize("token", ["tok-provider", "tok-customer", "tok-device", "tok-other-provider"])
def test_verify_endpoint_refuses_other_roles(client, token) -> None:
    r = client.get("/v1/audit/verify", headers=auth(token))
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert client.get("/v1/audit/verify").status_code == 401


def test_verify_endpoint_reports_a_block_corrupted_on_disk(
    client, active, device_key, tmp_path: Path
) -> None:
    _invoice(client, device_key)
    db = tmp_path / "ledger" / "ledger.sqlite"
    assert db.exists()
    conn = sqlite3.connect(db)
    with conn:
        (header,) = conn.execute("SELECT header FROM blocks WHERE number = 3").fetchone()
        header = bytes(header)
        pos = header.index(b'"data_hash":"') + 14  # one hex digit of the data hash
        flipped = header[:pos] + (b"0" if header[pos : pos + 1] != b"0" else b"1") + header[pos + 1 :]
        conn.execute("UPDATE blocks SET header = ? WHERE number = 3", (flipped,))
    conn.close()
    r = client.get("/v1/audit/verify", headers=auth("tok-auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False
    found = {(p["check"], p["block"]) for p in body["problems"]}
    assert ("block_hash", 3) in found and ("data_hash", 3) in found and ("hash_link", 4) in found
    assert 3 in body["failed_blocks"]
    assert "block 3" in body["summary"]
