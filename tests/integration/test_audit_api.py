"""Audit through the hub: the proof endpoint serves bundles that verify offline, and `GET /v1/audit/verify`
reports on the whole embedded ledger (auditor and operator only), including a block corrupted on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hub.audit.verify import verify_bundle
from tests.helpers.api import auth, last_month, post_usage, ts, usage
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
    spec = client.get("/openapi.json").json()
    assert "403" in spec["paths"]["/v1/audit/verify"]["get"]["responses"]


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


def test_proof_after_dispute_and_credit_note(client, active, device_key) -> None:
    """The invoice record changes after issue (disputed, credited): the bundle carries those transactions
    too and still verifies; a credit note itself has no proof of its own (422 not_an_invoice)."""
    invoice = _invoice(client, device_key)
    r = client.post(
        f"/v1/invoices/{invoice['id']}/dispute", json={"reason": "scan count"}, headers=auth("tok-customer")
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes", json={"reason": "agreed"}, headers=auth("tok-provider")
    )
    assert r.status_code == 201, r.text
    note = r.json()
    bundle = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor")).json()
    assert bundle["invoice"]["status"] == "CREDITED"
    fns = [t["function"] for t in bundle["transactions"]]
    assert fns[-3:] == ["CloseBillingPeriod", "Dispute", "IssueCreditNote"]
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    # the credited record, but with the issued status put back: the last version no longer matches
    bundle["invoice"]["status"] = "ISSUED"
    assert ("invoice", "differs") in {(f.part, f.check) for f in verify_bundle(bundle).failures}
    r = client.get(f"/v1/invoices/{note['id']}/proof", headers=auth("tok-auditor"))
    assert r.status_code == 422 and r.json()["code"] == "not_an_invoice"


def test_genesis_hash_from_the_verify_endpoint_pins_bundles(client, active, device_key) -> None:
    invoice = _invoice(client, device_key)
    anchor = client.get("/v1/audit/verify", headers=auth("tok-auditor")).json()["genesis_hash"]
    bundle = client.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor")).json()
    assert verify_bundle(bundle, genesis_hash=anchor).ok
    assert anchor in verify_bundle(bundle).summary()
    other = verify_bundle(bundle, genesis_hash="ab" * 32)
    assert [(f.part, f.check) for f in other.failures] == [("genesis", "anchor")]


def test_ledgers_without_evidence_answer_501(tmp_path: Path, device_key) -> None:
    """A ledger whose records carry no envelopes (the in-memory test ledger) gives no proof and no
    whole-ledger report: clear 501 problems, not empty successes."""
    from tests.helpers.api import InMemoryLedger, hub_client, hub_settings, setup_contract

    with hub_client(hub_settings(tmp_path), InMemoryLedger(), background=False) as c:
        setup_contract(c, device_key)
        invoice = _invoice(c, device_key)
        r = c.get(f"/v1/invoices/{invoice['id']}/proof", headers=auth("tok-auditor"))
        assert r.status_code == 501 and r.json()["code"] == "proof_unsupported"
        r = c.get("/v1/audit/verify", headers=auth("tok-operator"))
        assert r.status_code == 501 and r.json()["code"] == "verify_unsupported"
