"""The ingestion pipeline (hub/ingest_pipeline.py, ADR 0039) on its own: how many batches are in flight,
and which messages wait for which. The batch runner here is a stand-in that blocks until the test releases
it; the integration tests (tests/integration/test_ingest_pipeline.py) run the real hub and ledger."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.ingest_pipeline import Pipeline

pytestmark = pytest.mark.unit


@dataclass
class Msg:
    key: tuple[str, str]
    raw: dict[str, Any] = field(default_factory=dict)


def msg(device: str, mid: str, *readings: str) -> Msg:
    return Msg((device, mid), {"readings": [{"id": r} for r in readings]})


class Runner:
    """Records every batch it is given and holds it until `release(i)`."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[threading.Event] = []
        self.started = threading.Condition()

    def __call__(self, batch: list[Msg]) -> None:
        gate = threading.Event()
        with self.started:
            self.batches.append([m.key[1] for m in batch])
            self.gates.append(gate)
            self.started.notify_all()
        assert gate.wait(10), "the test never released this batch"

    def wait_batches(self, n: int) -> None:
        with self.started:
            assert self.started.wait_for(lambda: len(self.batches) >= n, 10), self.batches

    def release(self, i: int) -> None:
        self.gates[i].set()


def start(depth: int, max_batch: int = 100) -> tuple[queue.Queue[Any], Runner, Pipeline, threading.Thread]:
    q: queue.Queue[Any] = queue.Queue()
    runner = Runner()
    pipeline = Pipeline(q, runner, depth=depth, max_batch=max_batch)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    return q, runner, pipeline, thread


def stop(q: queue.Queue[Any], runner: Runner, thread: threading.Thread) -> None:
    for gate in runner.gates:
        gate.set()
    q.put(None)
    thread.join(10)
    assert not thread.is_alive()


def test_depth_one_is_one_batch_at_a_time():
    q, runner, _p, thread = start(depth=1)
    q.put(msg("d1", "m1", "r1"))
    runner.wait_batches(1)
    for i in range(2, 5):
        q.put(msg("d1", f"m{i}", f"r{i}"))
    with runner.started:  # nothing else starts while the first is out
        assert not runner.started.wait_for(lambda: len(runner.batches) > 1, 0.3)
    runner.release(0)
    runner.wait_batches(2)
    assert runner.batches == [["m1"], ["m2", "m3", "m4"]]  # what waited went together
    stop(q, runner, thread)


def test_several_batches_in_flight_up_to_the_depth():
    q, runner, pipeline, thread = start(depth=2)
    q.put(msg("d1", "m1", "r1"))
    runner.wait_batches(1)
    q.put(msg("d1", "m2", "r2"))  # disjoint readings: goes at once, beside m1
    runner.wait_batches(2)
    q.put(msg("d2", "m3", "r3"))
    q.put(msg("d2", "m4", "r4"))
    assert pipeline.in_flight == 2
    runner.release(0)  # a slot frees: the two waiting go together
    runner.wait_batches(3)
    assert runner.batches == [["m1"], ["m2"], ["m3", "m4"]]
    stop(q, runner, thread)


def test_a_message_sharing_a_reading_waits_for_the_batch_in_flight():
    q, runner, pipeline, thread = start(depth=4)
    q.put(msg("d1", "m1", "r1", "r2"))
    runner.wait_batches(1)
    # m2 repeats d1/r2 (it must be judged after m1: it is the duplicate); m3 repeats m2's r9, so it waits
    # for m2 although it shares nothing with m1; m4 has the same reading id on another device: free
    q.put(msg("d1", "m2", "r2", "r9"))
    q.put(msg("d1", "m3", "r9"))
    q.put(msg("d2", "m4", "r2"))
    runner.wait_batches(2)
    assert runner.batches == [["m1"], ["m4"]]
    assert [m.key[1] for m in pipeline.held] == ["m2", "m3"]
    runner.release(1)  # m4's batch ends: m2 and m3 still wait for m1
    with runner.started:
        assert not runner.started.wait_for(lambda: len(runner.batches) > 2, 0.3)
    runner.release(0)
    runner.wait_batches(3)
    assert runner.batches[2] == ["m2", "m3"]  # arrival order, in one batch (the contract keeps its order)
    assert pipeline.held == []
    stop(q, runner, thread)


def test_a_full_batch_leaves_the_rest_for_the_next_slot():
    q, runner, _pipeline, thread = start(depth=2, max_batch=2)
    q.put(msg("d1", "m0", "r0"))
    runner.wait_batches(1)
    for i in range(1, 6):
        q.put(msg("d1", f"m{i}", f"r{i}"))
    runner.wait_batches(2)
    runner.release(0)
    runner.wait_batches(3)
    runner.release(1)
    runner.wait_batches(4)
    runner.release(2)
    runner.release(3)
    stop(q, runner, thread)
    taken = [m for b in runner.batches for m in b]
    assert taken == [f"m{i}" for i in range(6)]  # every message once, in arrival order
    assert all(len(b) <= 2 for b in runner.batches)


def test_stop_waits_for_the_batches_in_flight():
    q, runner, pipeline, thread = start(depth=3)
    q.put(msg("d1", "m1", "r1"))
    runner.wait_batches(1)
    q.put(None)
    thread.join(0.3)
    assert thread.is_alive()  # still waiting for m1's commit
    runner.release(0)
    thread.join(10)
    assert not thread.is_alive() and pipeline.in_flight == 0


def test_a_failing_batch_frees_its_slot_and_its_readings():
    q: queue.Queue[Any] = queue.Queue()
    seen: list[str] = []

    def run(batch: list[Msg]) -> None:
        seen.extend(m.key[1] for m in batch)
        if batch[0].key[1] == "m1":
            raise RuntimeError("boom")

    pipeline = Pipeline(q, run, depth=1, max_batch=10)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    q.put(msg("d1", "m1", "r1"))
    q.put(msg("d1", "m2", "r1"))
    done = threading.Event()
    for _ in range(1000):
        if "m2" in seen:
            break
        done.wait(0.01)
    q.put(None)
    thread.join(10)
    assert seen.count("m1") == seen.count("m2") == 1  # the worker survived m1's failure
    assert pipeline.in_flight == 0 and pipeline.held == []


@dataclass
class Sized(Msg):
    size: int = 0


def readings_msg(device: str, mid: str, n: int, size: int = 0) -> Sized:
    return Sized((device, mid), {"readings": [{"id": f"{mid}-{i}"} for i in range(n)]}, size)


def test_a_batch_is_capped_by_readings_not_only_by_messages():
    """ADR 0069: 40 messages of 1,000 readings made one transaction the orderer refused (over 10 MB); the
    batch stops before the reading cap, the rest waits for the next batch, in arrival order."""
    pipeline = Pipeline(queue.Queue(), lambda b: None, depth=2, max_batch=500, max_readings=8000)
    fresh = [readings_msg(f"d{i % 4}", f"m{i}", 1000) for i in range(20)]
    batch = pipeline._select(fresh)
    assert [m.key[1] for m in batch] == [f"m{i}" for i in range(8)]
    assert [m.key[1] for m in pipeline.held] == [f"m{i}" for i in range(8, 20)]
    assert pipeline._overflow  # held only for size: the next drain does not wait for a new message
    nxt = pipeline._select([])
    assert [m.key[1] for m in nxt] == [f"m{i}" for i in range(8, 16)]


def test_a_batch_is_capped_by_signed_bytes():
    pipeline = Pipeline(queue.Queue(), lambda b: None, depth=1, max_batch=500, max_bytes=250_000)
    fresh = [readings_msg("d1", f"m{i}", 10, size=100_000) for i in range(5)]
    assert [m.key[1] for m in pipeline._select(fresh)] == ["m0", "m1"]
    assert [m.key[1] for m in pipeline._select([])] == ["m2", "m3"]


def test_a_message_over_the_caps_still_goes_alone():
    """A valid message is never held forever: alone it is a batch whatever its size."""
    pipeline = Pipeline(queue.Queue(), lambda b: None, depth=1, max_batch=500, max_readings=10, max_bytes=5)
    fresh = [readings_msg("d1", "big", 1000, size=90_000), readings_msg("d2", "next", 1)]
    assert [m.key[1] for m in pipeline._select(fresh)] == ["big"]
    assert [m.key[1] for m in pipeline._select([])] == ["next"]


def test_without_caps_only_the_message_count_limits_a_batch():
    pipeline = Pipeline(queue.Queue(), lambda b: None, depth=1, max_batch=3)
    fresh = [readings_msg("d1", f"m{i}", 1000, size=10**6) for i in range(5)]
    assert [m.key[1] for m in pipeline._select(fresh)] == ["m0", "m1", "m2"]
