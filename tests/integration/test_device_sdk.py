"""The device SDK against the real hub app on the embedded ledger (in process, through its HTTP API):
batches land on the ledger, a refused reading is reported with the hub's code and the rest of its message
is sent again, duplicates are recognised, a 503 is retried after exactly its Retry-After, a token the hub
refuses stops the sender with nothing dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.ledger.base import LedgerError
from ledgerhub.device import DeviceClient, DeviceConfigError, PemSigner, ReadingConflict
from tests.helpers.api import auth, last_month, post_usage, ts
from tests.helpers.chaincode import DEVICE_ID, reading, signed_message

pytestmark = [pytest.mark.integration]


def sdk(client: Any, device_key: Any, tmp_path: Path, token: str = "tok-device", **kw: Any) -> DeviceClient:
    return DeviceClient(None, device_id=DEVICE_ID, token=token, signer=PemSigner(device_key.private_key),
                        queue_path=tmp_path / "queue.sqlite", http=client, **kw)


def test_batches_reach_the_ledger_and_duplicates_are_recognised(client, ledger, device_key, active, tmp_path):
    period, _ = last_month()
    device = sdk(client, device_key, tmp_path, batch_size=7)
    for i in range(20):
        assert device.add(f"r-{i:04d}", metric="scan", quantity="1", timestamp=ts(period, 2 + i % 20))
    assert not device.add("r-0000", metric="scan", quantity="1", timestamp=ts(period, 2))  # same again
    with pytest.raises(ReadingConflict):
        device.add("r-0000", metric="scan", quantity="2", timestamp=ts(period, 2))
    report = device.flush()
    assert (report.messages, report.delivered, report.pending) == (3, 20, 0)  # 7 + 7 + 6
    assert ledger.usage_batches and sum(ledger.usage_batches) == 3
    usage = client.get(f"/v1/contracts/{active['id']}/usage", params={"period": period},
                       headers=auth("tok-provider")).json()
    assert usage["aggregate"]["metrics"]["scan"]["sum"] in ("20", 20)
    states = {r.id: (r.state, r.tx_id) for r in device.queue.readings()}
    assert all(state == "delivered" and tx for state, tx in states.values())

    # the same readings again under a new queue (a device whose SQLite file was lost): duplicates, not twice
    again = DeviceClient(None, device_id=DEVICE_ID, token="tok-device",
                         signer=PemSigner(device_key.private_key), queue_path=tmp_path / "fresh.sqlite",
                         http=client, batch_size=50)
    again.add_many([{"id": f"r-{i:04d}", "metric": "scan", "quantity": "1",
                     "timestamp": ts(period, 2 + i % 20)} for i in range(20)])
    report = again.flush()
    assert (report.duplicates, report.delivered, report.refused) == (20, 0, 0)
    usage = client.get(f"/v1/contracts/{active['id']}/usage", params={"period": period},
                       headers=auth("tok-provider")).json()
    assert usage["aggregate"]["metrics"]["scan"]["sum"] in ("20", 20)


def test_a_refused_reading_is_reported_and_the_rest_is_sent(client, ledger, device_key, active, tmp_path):
    period, _ = last_month()
    # r-conflict is on the ledger already with quantity 5; the device later sends it with quantity 1
    first = signed_message(device_key, [reading("r-conflict", quantity="5", timestamp=ts(period, 3))],
                           message_id="before-sdk")
    assert post_usage(client, first).status_code == 202
    device = sdk(client, device_key, tmp_path, batch_size=10)
    device.add("r-a", metric="scan", quantity="1", timestamp=ts(period, 4))
    device.add("r-conflict", metric="scan", quantity="1", timestamp=ts(period, 3))
    device.add("r-metric", metric="no_such_metric", quantity="1", timestamp=ts(period, 4))
    device.add("r-b", metric="scan", quantity="2", timestamp=ts(period, 5))
    report = device.flush()
    assert report.pending == 0 and report.delivered == 2 and report.refused == 2
    refused = {r.id: r.code for r in device.refusals()}
    assert refused == {"r-conflict": "reading_conflict", "r-metric": "unknown_metric"}
    assert all(r.detail for r in device.refusals())
    assert {r.id for r in device.queue.readings("delivered")} == {"r-a", "r-b"}
    # a refused reading is final: another flush sends nothing
    sent = sum(ledger.usage_batches)
    assert device.flush().messages == 0 and sum(ledger.usage_batches) == sent


def test_503_is_retried_after_its_retry_after(client, ledger, device_key, active, tmp_path):
    period, _ = last_month()
    waits: list[float] = []
    device = sdk(client, device_key, tmp_path, sleep=waits.append)
    device.add("r-1", metric="scan", quantity="1", timestamp=ts(period, 6))
    ledger.fail_before.extend([LedgerError("orderer down (injected)"), LedgerError("still down (injected)")])
    report = device.flush()
    assert report.retries == 2 and report.delivered == 1
    assert waits == [1.0, 1.0]  # the hub's Retry-After (ingest_retry_after_seconds = 1), not the backoff
    messages = device.queue.messages()
    assert len(messages) == 1 and messages[0]["attempts"] == 3  # one message id, sent three times


def test_max_wait_gives_up_with_the_readings_kept(client, ledger, device_key, active, tmp_path):
    period, _ = last_month()
    device = sdk(client, device_key, tmp_path, sleep=lambda _s: None)
    device.add("r-1", metric="scan", quantity="1", timestamp=ts(period, 6))
    ledger.fail_before.extend(LedgerError("down (injected)") for _ in range(3))
    report = device.flush(max_wait=2.5)
    assert report.delivered == 0 and report.pending == 1 and report.retries == 3
    assert device.flush().delivered == 1  # the hub is back


def test_a_refused_token_stops_the_sender_and_drops_nothing(client, ledger, device_key, active, tmp_path):
    period, _ = last_month()
    device = sdk(client, device_key, tmp_path, token="tok-provider")  # not a device token
    device.add("r-1", metric="scan", quantity="1", timestamp=ts(period, 6))
    with pytest.raises(DeviceConfigError) as err:
        device.flush()
    assert err.value.status == 403
    assert device.status()["sending"] == 1 and device.status()["refused"] == 0
    device.close()
    fixed = sdk(client, device_key, tmp_path)  # same queue file, the right token
    assert fixed.flush().delivered == 1


def test_a_key_the_hub_does_not_know_stops_the_sender(client, ledger, device_key, active, tmp_path):
    """bad_signature is the device's key, not its readings: nothing is refused, all stays queued."""
    period, _ = last_month()
    wrong = DeviceClient(None, device_id=DEVICE_ID, token="tok-device", signer=PemSigner.generate(),
                         queue_path=tmp_path / "queue.sqlite", http=client)
    wrong.add("r-1", metric="scan", quantity="1", timestamp=ts(period, 6))
    with pytest.raises(DeviceConfigError) as err:
        wrong.flush()
    assert (err.value.status, err.value.code) == (400, "bad_signature")
    assert wrong.status()["refused"] == 0 and wrong.status()["sending"] == 1
    wrong.close()
    assert sdk(client, device_key, tmp_path).flush().delivered == 1  # the right key, the same queue


def test_bad_input_is_refused_at_add(tmp_path, device_key):
    device = DeviceClient("http://127.0.0.1:9", device_id=DEVICE_ID, token="t",
                          signer=PemSigner(device_key.private_key), queue_path=tmp_path / "q.sqlite")
    with pytest.raises(ValueError, match="UTC offset"):
        device.add("r", metric="scan", quantity="1", timestamp="2026-11-03T09:15:00")
    with pytest.raises(ValueError, match="non-negative"):
        device.add("r", metric="scan", quantity="-1", timestamp="2026-11-03T09:15:00Z")
    with pytest.raises(TypeError):
        device.add("r", metric="scan", quantity=0.1, timestamp="2026-11-03T09:15:00Z")
    with pytest.raises(ValueError):
        device.add("", metric="scan", quantity="1", timestamp="2026-11-03T09:15:00Z")
    assert device.status()["queued"] == 0


def test_no_answer_backs_off_exponentially_and_keeps_the_message(tmp_path, device_key):
    """Nobody listens on the port: each resend of the same message waits longer (jittered between half
    and all of base x 2^n, capped), and the readings stay queued under their message id."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    device = DeviceClient(f"http://127.0.0.1:{port}", device_id=DEVICE_ID, token="t",
                          signer=PemSigner(device_key.private_key), queue_path=tmp_path / "q.sqlite",
                          backoff_base=0.5, backoff_cap=4.0, sleep=waits.append, timeout=2.0)
    device.add("r-1", metric="scan", quantity="1", timestamp="2026-11-03T09:15:00+01:00")
    report = device.flush(max_wait=30)
    assert report.pending == 1 and report.delivered == 0
    ceilings = [min(4.0, 0.5 * 2 ** n) for n in range(len(waits))]
    assert len(waits) >= 6
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), (waits, ceilings)
    (message,) = device.queue.messages()
    assert message["state"] == "open" and message["attempts"] == len(waits) + 1
