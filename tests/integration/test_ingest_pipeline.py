"""Several usage transactions in flight (LEDGERHUB_INGEST_PIPELINE_DEPTH, ADR 0039) through POST /v1/usage on
the embedded ledger: transactions overlap, and a message that repeats a reading of one still in flight waits
for it, so the first message to arrive records the reading, as with one transaction at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hub.api.app import pipeline_depth
from hub.config import Settings
from tests.helpers.api import (
    ControlledLedger,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import reading

pytestmark = pytest.mark.integration
PERIOD, _ = last_month()


class GatedLedger(ControlledLedger):
    """A RecordUsage whose messages include a gated message id waits until the test opens that gate."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.gates: dict[str, threading.Event] = {}
        self.entered_ids: list[list[str]] = []
        self.changed = threading.Condition()

    def submit(self, fn: str, args: Any = (), *, as_org: str, transient: Any = None) -> Any:
        if fn == "RecordUsage":
            ids = [m["message_id"] for m in json.loads(args[0])["messages"]]
            with self.changed:
                self.entered_ids.append(ids)
                self.changed.notify_all()
            for mid in ids:
                if mid in self.gates:
                    assert self.gates[mid].wait(60), "test gate never opened"
        return super().submit(fn, args, as_org=as_org, transient=transient)

    def wait_entered(self, mid: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: any(mid in ids for ids in self.entered_ids), 30), mid


@pytest.fixture
def gated(tmp_path) -> Iterator[GatedLedger]:
    ledger = GatedLedger(embedded_ledger(tmp_path / "ledger"))
    yield ledger
    ledger.close()


@pytest.fixture
def piped(tmp_path, gated):
    with hub_client(hub_settings(tmp_path, ingest_pipeline_depth=2), gated, background=False) as client:
        yield client


def on_ledger(ledger: Any, contract_id: str) -> list[str]:
    arg = json.dumps({"contract_id": contract_id, "period": PERIOD})
    records = json.loads(ledger.evaluate("GetReadings", [arg], as_org="ProviderMSP"))["readings"]
    return sorted(r["id"] for r in records)


def msg(key, mid, *ids):
    return usage(key, mid, [reading(i, "scan", "1", ts(PERIOD, 3)) for i in ids])


def test_transactions_overlap_and_a_repeated_reading_waits_for_its_first_message(piped, gated, device_key):
    contract_id = setup_contract(piped, device_key)["id"]
    gated.gates["m-1"] = threading.Event()
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(post_usage, piped, msg(device_key, "m-1", "r-1", "r-2"))
        gated.wait_entered("m-1")
        # disjoint readings: a second transaction goes out and commits while m-1's is still out
        second = post_usage(piped, msg(device_key, "m-2", "r-3"))
        assert second.status_code == 202 and second.json()["accepted"] == 1
        assert not first.done()
        # m-3 repeats r-2 of m-1, which is still in flight: it waits instead of racing m-1 for r-2
        third = pool.submit(post_usage, piped, msg(device_key, "m-3", "r-2", "r-4"))
        ingestor = piped.app.state.services.ingestor
        for _ in range(600):
            if [p.key[1] for p in ingestor.pipeline.held] == ["m-3"]:
                break
            threading.Event().wait(0.01)
        assert [p.key[1] for p in ingestor.pipeline.held] == ["m-3"]
        assert not any("m-3" in ids for ids in gated.entered_ids)
        gated.gates["m-1"].set()
        one, three = first.result(), third.result()
    assert one.status_code == 202 and one.json()["accepted"] == 2 and one.json()["duplicates"] == []
    # judged after m-1, as with one transaction at a time: r-2 is m-1's, r-4 is new
    assert three.status_code == 202 and three.json()["accepted"] == 1
    assert three.json()["duplicates"] == ["r-2"]
    assert len({one.json()["tx_id"], second.json()["tx_id"], three.json()["tx_id"]}) == 3
    assert on_ledger(gated, contract_id) == ["r-1", "r-2", "r-3", "r-4"]  # each once


def test_many_concurrent_messages_with_repeats_are_each_recorded_once(piped, gated, device_key):
    """40 messages from 16 threads, every reading sent by two messages: each reading is accepted exactly
    once across all answers and is on the ledger once."""
    contract_id = setup_contract(piped, device_key)["id"]
    messages = [msg(device_key, f"m-{i}", f"r-{i}", f"r-{(i + 1) % 40}") for i in range(40)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda m: post_usage(piped, m), messages))
    accepted = [a.json()["accepted"] for a in answers if a.status_code == 202]
    assert sum(accepted) == 40, [(a.status_code, a.json()) for a in answers]
    refused = [a.json() for a in answers if a.status_code != 202]
    assert all(r["code"] == "duplicate_reading" for r in refused)  # both readings already recorded
    assert on_ledger(gated, contract_id) == sorted(f"r-{i}" for i in range(40))


def test_depth_defaults_per_ledger_and_the_setting_wins(tmp_path):
    assert pipeline_depth(Settings(ledger="embedded")) == 1
    assert pipeline_depth(Settings(ledger="fabric")) == 2
    assert pipeline_depth(Settings(ledger="embedded", ingest_pipeline_depth=3)) == 3


def test_a_depth_out_of_range_is_refused():
    with pytest.raises(ValueError, match="ingest_pipeline_depth"):
        Settings(ingest_pipeline_depth=0)
