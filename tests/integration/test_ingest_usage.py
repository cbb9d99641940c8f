"""Usage ingestion through POST /v1/usage on the embedded ledger: replays, duplicates, forgeries, per-message
refusals, batching, and what happens when the ledger fails (nothing lost, nothing twice)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.ledger.base import EndorsementFailed, LedgerUnavailable, TransactionInvalid
from tests.helpers.api import auth, hub_client, hub_settings, last_month, post_usage, ts, usage
from tests.helpers.chaincode import reading

pytestmark = pytest.mark.integration
PERIOD, _ = last_month()


def msg(key, mid, *ids, metric="scan", quantity="1", day=3):
    return usage(key, mid, [reading(i, metric, quantity, ts(PERIOD, day)) for i in ids])


def ingestor(client):
    return client.app.state.services.ingestor


def wait_until(predicate, what):
    """Poll a condition another thread makes true (bounded only to fail instead of hanging)."""
    event = threading.Event()
    for _ in range(6000):
        if predicate():
            return
        event.wait(0.005)
    raise AssertionError(f"never happened: {what}")


def test_replay_returns_the_first_answer_and_writes_once(client, ledger, active, device_key):
    m = msg(device_key, "m-1", "r-1", "r-2")
    first = post_usage(client, m)
    assert first.status_code == 202 and first.json()["accepted"] == 2
    for _ in range(3):
        again = post_usage(client, m)
        assert again.status_code == 202 and again.json() == first.json()
    assert ledger.submits["RecordUsage"] == 1
    assert 'ledgerhub_usage_messages_total{outcome="replay"} 3.0' in client.get("/metrics").text


def test_same_message_id_with_other_content_is_a_conflict(client, ledger, active, device_key):
    assert post_usage(client, msg(device_key, "m-1", "r-1")).status_code == 202
    r = post_usage(client, msg(device_key, "m-1", "r-other"))
    assert r.status_code == 409 and r.json()["code"] == "message_id_conflict"
    assert ledger.submits["RecordUsage"] == 1


def test_resent_readings_are_duplicates(client, ledger, active, device_key, caplog):
    assert post_usage(client, msg(device_key, "m-1", "r-1", "r-2")).status_code == 202
    with caplog.at_level(logging.WARNING, logger="ledgerhub.ingest"):
        all_dup = post_usage(client, msg(device_key, "m-2", "r-1", "r-2"))
    assert all_dup.status_code == 409
    # m-2 is not on the ledger, so the hub's check for "a repeat of this very message" finds nothing: that
    # is the ordinary case, not a warning with a traceback in the operator's log
    assert [r.getMessage() for r in caplog.records] == []
    body = all_dup.json()
    assert body["code"] == "duplicate_reading" and sorted(body["reading_ids"]) == ["r-1", "r-2"]
    assert body["message_id"] == "m-2"
    assert all_dup.headers["content-type"].startswith("application/problem+json")
    # the refusal is recorded after the ledger judged it: its replay answers the same without a write
    writes = ledger.submits["RecordUsage"]
    assert post_usage(client, msg(device_key, "m-2", "r-1", "r-2")).json() == body
    assert ledger.submits["RecordUsage"] == writes
    partial = post_usage(client, msg(device_key, "m-3", "r-2", "r-3"))
    assert partial.status_code == 202
    assert partial.json()["accepted"] == 1 and partial.json()["duplicates"] == ["r-2"]


def test_forged_message_is_refused_at_the_edge_and_does_not_claim_the_id(client, ledger, active, device_key):
    genuine = msg(device_key, "m-1", "r-1", quantity="3")
    forged = {**genuine, "readings": [{**genuine["readings"][0], "quantity": "1"}]}
    r = post_usage(client, forged)
    assert r.status_code == 400
    assert r.json()["code"] == "bad_signature" and r.json()["reading_ids"] == ["r-1"]
    assert ledger.submits["RecordUsage"] == 0
    not_base64 = {**genuine, "message_id": "m-2", "signature": "%%%"}
    assert post_usage(client, not_base64).json()["code"] == "bad_signature"
    ok = post_usage(client, genuine)
    assert ok.status_code == 202 and ok.json()["accepted"] == 1


def test_a_key_from_elsewhere_is_a_forgery(client, ledger, active):
    from tests.helpers.chaincode import make_device_key

    r = post_usage(client, msg(make_device_key("intruder"), "m-1", "r-1"))
    assert r.status_code == 400 and r.json()["code"] == "bad_signature"


def test_another_orgs_device_token_cannot_probe_message_ids(client, ledger, active, device_key):
    """A replay is answered only to the org that owns the device: another org's device token gets the same
    404 `unknown_asset` for a message id that exists, for one that exists with other content, and for one
    that does not (the old order looked the id up first and answered 202 / 409 for the existing ones)."""
    first = post_usage(client, msg(device_key, "m-1", "r-1"))
    assert first.status_code == 202
    probes = {
        "exact replay": msg(device_key, "m-1", "r-1"),
        "same id, other content": msg(device_key, "m-1", "r-other"),
        "unused id": msg(device_key, "m-never", "r-9"),
    }
    answers = {name: post_usage(client, m, token="tok-other-device") for name, m in probes.items()}
    got = {name: (r.status_code, r.json().get("code")) for name, r in answers.items()}
    assert got == {name: (404, "unknown_asset") for name in probes}
    assert len({r.json()["detail"] for r in answers.values()}) == 1  # nothing tells them apart
    assert ledger.submits["RecordUsage"] == 1


def test_exact_replay_with_a_junk_signature_is_refused(client, ledger, active, device_key):
    """The stored answer is given only for a message the device really signed: an exact replay (same
    content, hence same digest) with a signature that does not verify is a forgery (the old order returned
    the first answer, tx id and block included)."""
    from tests.helpers.chaincode import make_device_key

    genuine = msg(device_key, "m-1", "r-1", "r-2")
    first = post_usage(client, genuine)
    assert first.status_code == 202
    other_key = msg(make_device_key("intruder"), "m-1", "r-1", "r-2")  # a valid signature, wrong key
    for junk in ("AAAA", other_key["signature"]):
        r = post_usage(client, {**genuine, "signature": junk})
        assert (r.status_code, r.json().get("code")) == (400, "bad_signature"), r.text
        assert "tx_id" not in r.json()
    assert post_usage(client, genuine).json() == first.json()  # the device's own replay still works
    assert ledger.submits["RecordUsage"] == 1


@pytest.mark.parametrize(
    ("reading_kw", "status", "code"),
    [
        ({"metric": "coffee"}, 400, "unknown_metric"),
        ({"quantity": "-1"}, 400, "invalid_quantity"),
        ({"quantity": "1e3"}, 400, "invalid_quantity"),
        ({"timestamp": "2026-11-03 09:15"}, 400, "invalid_timestamp"),
        ({"timestamp": "2099-01-01T00:00:00+00:00"}, 400, "timestamp_in_future"),
        ({"timestamp": "2001-01-01T00:00:00+00:00"}, 400, "timestamp_outside_contract"),
    ],
)
def test_chaincode_refusals_name_the_readings(client, ledger, active, device_key, reading_kw, status, code):
    bad = {**reading("r-bad", timestamp=ts(PERIOD, 4)), **reading_kw}
    m = usage(device_key, "m-bad", [reading("r-ok", timestamp=ts(PERIOD, 4)), bad])
    r = post_usage(client, m)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert "r-bad" in r.json()["reading_ids"]
    # nothing of the message was written: the good reading is still new
    ok = post_usage(client, msg(device_key, "m-ok", "r-ok", day=4))
    assert ok.status_code == 202 and ok.json()["accepted"] == 1


def test_shape_errors(client, ledger, active, device_key):
    r = client.post(
        "/v1/usage",
        content=b'{"device_id": ',
        headers={**auth("tok-device"), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = post_usage(
        client, {"device_id": "mri-berlin-01", "message_id": "m", "readings": [], "signature": "x"}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert any(e["loc"][-1] == "readings" for e in r.json()["errors"])
    r = client.post("/v1/usage", json=[1, 2], headers=auth("tok-device"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    extra = {**msg(device_key, "m-x", "r-x"), "surprise": True}
    r = post_usage(client, extra)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "surprise"
    repeated = usage(
        device_key,
        "m-rep",
        [reading("r-1", timestamp=ts(PERIOD, 2)), reading("r-1", timestamp=ts(PERIOD, 3))],
    )
    r = post_usage(client, repeated)
    assert (
        r.status_code == 400 and r.json()["code"] == "invalid_argument" and r.json()["reading_ids"] == ["r-1"]
    )
    assert ledger.submits["RecordUsage"] == 0


def test_malformed_json_on_a_model_route(client):
    r = client.post(
        "/v1/contracts",
        content=b"{nope",
        headers={**auth("tok-provider"), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = client.post("/v1/contracts", json={"id": "x"}, headers=auth("tok-provider"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert {tuple(e["loc"]) for e in r.json()["errors"]} >= {("body", "provider"), ("body", "charges")}


def test_body_limits(tmp_path, ledger, device_key):
    settings = hub_settings(tmp_path, max_body_bytes=2_000, max_readings_per_message=3)
    with hub_client(settings, ledger, background=False) as c:
        from tests.helpers.api import setup_contract

        setup_contract(c, device_key)
        big = usage(device_key, "m-big", [reading(f"r-{i}", "scan", "1", ts(PERIOD, 2)) for i in range(30)])
        r = post_usage(c, big)
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"

        def chunks():
            yield b'{"device_id": "' + b"x" * 1500
            yield b"x" * 1500 + b'"}'

        r = c.post(
            "/v1/usage", content=chunks(), headers={**auth("tok-device"), "content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        r = c.post(
            "/v1/contracts",
            content=b"{" + b" " * 3000 + b"}",
            headers={**auth("tok-provider"), "content-type": "application/json"},
        )
        assert r.status_code == 413
        four = usage(device_key, "m-4", [reading(f"q-{i}", "scan", "1", ts(PERIOD, 2)) for i in range(4)])
        r = post_usage(c, four)
        assert r.status_code == 413 and r.json()["code"] == "too_many_readings"
        assert ledger.submits["RecordUsage"] == 0


def test_concurrent_messages_share_one_transaction(client, ledger, active, device_key):
    """While one transaction is out, everything that arrives is packed into the next one."""
    ledger.entered.clear()  # set by the contract set-up's transactions
    ledger.gate = threading.Event()
    messages = [msg(device_key, f"m-{i}", f"r-{i}") for i in range(12)]
    bad = usage(device_key, "m-bad", [reading("r-bad", "coffee", "1", ts(PERIOD, 3))])
    with ThreadPoolExecutor(max_workers=14) as pool:
        first = pool.submit(post_usage, client, messages[0])
        wait_until(ledger.entered.is_set, "first submit reached the ledger")
        rest = [pool.submit(post_usage, client, m) for m in [*messages[1:], bad]]
        wait_until(lambda: ingestor(client)._queue.qsize() == 12, "12 messages queued")
        ledger.gate.set()
        answers = [first.result(), *(f.result() for f in rest)]
    assert ledger.usage_batches == [1, 12]
    good = [a.json() for a in answers[1:-1]]
    assert {a["tx_id"] for a in good} == {good[0]["tx_id"]} != {answers[0].json()["tx_id"]}
    assert all(a["accepted"] == 1 for a in good)
    assert answers[-1].status_code == 400 and answers[-1].json()["code"] == "unknown_metric"
    assert answers[-1].json()["tx_id"] == good[0]["tx_id"]  # judged inside the same transaction
    metrics = client.get("/metrics").text
    assert "ledgerhub_usage_batch_messages_count 2.0" in metrics
    assert "ledgerhub_usage_batch_messages_sum 13.0" in metrics


def test_concurrent_replays_of_one_message_write_once(client, ledger, active, device_key):
    ledger.entered.clear()
    ledger.gate = threading.Event()
    m = msg(device_key, "m-1", "r-1")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(post_usage, client, m) for _ in range(4)]
        wait_until(ledger.entered.is_set, "submit reached the ledger")
        ledger.gate.set()
        answers = [f.result() for f in futures]
    assert {a.status_code for a in answers} == {202}
    assert len({a.text for a in answers}) == 1
    assert ledger.submits["RecordUsage"] == 1


def test_wait_false_queues_and_a_replay_learns_the_outcome(client, ledger, active, device_key):
    m = msg(device_key, "m-q", "r-q")
    r = post_usage(client, m, wait="false")
    assert r.status_code == 202 and r.json() == {"status": "queued", "message_id": "m-q"}
    final = post_usage(client, m)
    assert final.status_code == 202 and final.json()["accepted"] == 1
    assert post_usage(client, m).json() == final.json()
    assert ledger.submits["RecordUsage"] == 1


def test_ledger_unavailable_leaves_nothing_and_a_retry_succeeds(client, ledger, active, device_key):
    ledger.fail_before.append(LedgerUnavailable("peer down (injected)"))
    m = msg(device_key, "m-1", "r-1")
    r = post_usage(client, m)
    assert r.status_code == 503 and r.json()["code"] == "ledger_unavailable"
    assert r.headers["Retry-After"] == "1" and r.json()["retry_after"] == 1  # ADR 0038
    retry = post_usage(client, m)
    assert retry.status_code == 202 and retry.json()["accepted"] == 1
    assert ledger.submits["RecordUsage"] == 1


def test_unknown_commit_status_is_resolved_from_the_ledger(client, ledger, active, device_key):
    ledger.fail_after.append("unknown")
    m = msg(device_key, "m-1", "r-1", "r-2")
    r = post_usage(client, m)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    assert ledger.tx(r.json()["tx_id"]).status == "VALID"
    assert post_usage(client, m).json() == r.json()
    assert ledger.submits["RecordUsage"] == 1


def test_mvcc_conflicts_are_retried_then_reported(client, ledger, active, device_key):
    ledger.fail_before.append(TransactionInvalid("t1", "MVCC_READ_CONFLICT"))
    ok = post_usage(client, msg(device_key, "m-1", "r-1"))
    assert ok.status_code == 202
    ledger.fail_before.extend(TransactionInvalid(f"t{i}", "MVCC_READ_CONFLICT") for i in range(4))
    r = post_usage(client, msg(device_key, "m-2", "r-2"))
    assert r.status_code == 503 and r.json()["code"] == "ledger_conflict"
    assert post_usage(client, msg(device_key, "m-2", "r-2")).status_code == 202


def test_endorsement_failure_is_a_503_problem(client, ledger, active):
    ledger.fail_before.append(EndorsementFailed("customer peer unreachable (injected)"))
    period, _ = last_month()
    r = client.post(f"/v1/contracts/ctr-mri-001/periods/{period}/close", headers=auth("tok-operator"))
    assert r.status_code == 503 and r.json()["code"] == "endorsement_failed"
    ledger.fail_before.append(LedgerUnavailable("down (injected)"))
    r = client.post(f"/v1/contracts/ctr-mri-001/periods/{period}/close", headers=auth("tok-operator"))
    assert r.status_code == 503 and r.json()["code"] == "ledger_unavailable"
    assert r.headers["Retry-After"] == "1"  # every ledger outage says when to come back (ADR 0038)


def test_a_caller_that_stops_waiting_can_replay(client, ledger, active, device_key):
    ledger.gate = threading.Event()
    ingestor(client).front.wait_timeout = 0.05
    m = msg(device_key, "m-1", "r-1")
    r = post_usage(client, m)
    assert r.status_code == 503 and r.json()["code"] == "ingest_timeout"
    ingestor(client).front.wait_timeout = 60
    ledger.gate.set()
    final = post_usage(client, m)
    assert final.status_code == 202 and final.json()["accepted"] == 1
    assert ledger.submits["RecordUsage"] == 1


def test_records_survive_a_restart(tmp_path, ledger, device_key):
    """The idempotency record lives in the database, not in the process."""
    settings = hub_settings(tmp_path)
    m = msg(device_key, "m-1", "r-1")
    with hub_client(settings, ledger, background=False) as c:
        from tests.helpers.api import setup_contract

        setup_contract(c, device_key)
        first = post_usage(c, m).json()
    with hub_client(settings, ledger, background=False) as c:
        assert post_usage(c, m).json() == first
    assert ledger.submits["RecordUsage"] == 1


def test_lost_answer_is_rebuilt_from_the_ledger_on_retry(client, ledger, active, device_key):
    """The commit happened but its answer was lost and could not be looked up: the device's retry is
    refused by the ledger as a repeat of itself, and the hub answers with the first answer instead."""
    assert post_usage(client, msg(device_key, "m-0", "r-1")).status_code == 202
    ledger.fail_after.append("unknown")
    ledger.hide_tx = True
    m = msg(device_key, "m-1", "r-1", "r-2")  # r-1 is already recorded: a partial duplicate
    lost = post_usage(client, m)
    assert lost.status_code == 503 and lost.json()["code"] == "commit_status_unknown"
    assert lost.headers["Retry-After"] == "1"
    ledger.hide_tx = False
    committed_tx = [tx for tx in (ledger.inner.block(ledger.height() - 1).tx_ids)]
    retry = post_usage(client, m)
    assert retry.status_code == 202, retry.text
    assert retry.json()["accepted"] == 1 and retry.json()["duplicates"] == ["r-1"]
    assert retry.json()["tx_id"] in committed_tx
    assert ledger.tx(retry.json()["tx_id"]).block == retry.json()["block"]
    # re-signed (ECDSA signatures differ) it is still the same message, with the same answer
    assert post_usage(client, msg(device_key, "m-1", "r-1", "r-2")).json() == retry.json()
    assert 'ledgerhub_usage_messages_total{outcome="recovered"} 1.0' in client.get("/metrics").text


def test_resigned_retry_after_lost_answer(client, ledger, active, device_key):
    ledger.fail_after.append("unknown")
    ledger.hide_tx = True
    assert post_usage(client, msg(device_key, "m-1", "r-1")).status_code == 503
    ledger.hide_tx = False
    again = post_usage(client, msg(device_key, "m-1", "r-1"))  # new signature: the ledger says conflict
    assert again.status_code == 202 and again.json()["accepted"] == 1


def test_two_replicas_racing_on_one_message_give_one_answer(tmp_path, ledger, device_key, database_url):
    """Two hub processes (same database, same ledger) get the same message at once: one ledger write
    accepts it, the other is refused as its repeat; both callers get the first answer."""
    settings = hub_settings(tmp_path, database_url)
    with (
        hub_client(settings, ledger, background=False) as a,
        hub_client(settings, ledger, background=False) as b,
    ):
        from tests.helpers.api import setup_contract

        setup_contract(a, device_key)
        ledger.gate = threading.Event()
        m = msg(device_key, "m-1", "r-1", "r-2")
        with ThreadPoolExecutor(max_workers=2) as pool:
            fa = pool.submit(post_usage, a, m)
            fb = pool.submit(post_usage, b, m)
            wait_until(lambda: ingestor(a)._inflight and ingestor(b)._inflight, "both replicas in flight")
            ledger.gate.set()
            ra, rb = fa.result(), fb.result()
    assert ra.status_code == rb.status_code == 202, (ra.text, rb.text)
    assert ra.json() == rb.json()
    assert ra.json()["accepted"] == 2
    assert ledger.submits["RecordUsage"] == 2  # both replicas wrote; the ledger judged the second a repeat


def test_asset_without_an_active_contract(client, ledger, device_key):
    from tests.helpers.chaincode import sample_asset

    assert (
        client.post("/v1/assets", json=sample_asset(device_key), headers=auth("tok-provider")).status_code
        == 201
    )
    r = post_usage(client, msg(device_key, "m-1", "r-1"))
    assert r.status_code == 409 and r.json()["code"] == "contract_not_active"
