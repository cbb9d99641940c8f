"""Ingestion has its own bounded capacity (ADR 0029): with the ledger blocked on purpose, a flood of usage
posts gets `503 ingest_saturated` with `Retry-After` past the bounds, and health checks and reads keep
answering.

The ledger is the real embedded ledger behind `ControlledLedger`, whose `gate` holds every submit until the
test opens it: a ledger that is slow for as long as the test says. Nothing here measures time: every check
is "this answered while the ledger was still blocked"; `GUARD` only keeps a broken build from hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.api import (
    ControlledLedger,
    auth,
    embedded_ledger,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import DeviceKey, make_device_key, reading

pytestmark = pytest.mark.integration

PERIOD, _ = last_month()
GUARD = 60.0  # seconds before a call that should answer at once is declared stuck (a hang guard only)
FLOOD = 48  # more than the server's shared threadpool (40 threads), which old code let usage posts hold
WAITING = 4  # ingest_max_waiting
PENDING = 6  # ingest_max_pending
CONTRACT = "ctr-mri-001"


def message(key: DeviceKey, n: int) -> dict[str, Any]:
    return usage(key, f"m-{n}", [reading(f"r-{n}", "scan", "1", ts(PERIOD, 3))])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, ControlledLedger, DeviceKey]]:
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    settings = hub_settings(tmp_path, ingest_edge_threads=2, ingest_edge_backlog=FLOOD + 16,
                            ingest_max_waiting=WAITING, ingest_max_pending=PENDING,
                            ingest_retry_after_seconds=3)
    key = make_device_key("capacity")
    try:
        with hub_client(settings, ledger, background=False) as client:
            setup_contract(client, key)
            yield client, ledger, key
            ledger.gate = None
    finally:
        if ledger.gate is not None:
            ledger.gate.set()  # never leave a blocked submit behind a failed test
        ledger.close()


def answered(pool: ThreadPoolExecutor, call: Callable[[], Any], what: str) -> Any:
    """Run `call` and return its answer; fail (instead of hanging) if it does not answer."""
    future = pool.submit(call)
    done, _ = wait([future], timeout=GUARD)
    assert done, f"{what} did not answer while ingestion was saturated (the ledger still blocked)"
    return future.result()


def at_least(futures: list[Future[Any]], n: int) -> list[Future[Any]]:
    """Wait until `n` of `futures` are done (bounded by GUARD); the done ones."""
    pending = set(futures)
    for _ in range(n):
        done = [f for f in futures if f.done()]
        if len(done) >= n:
            return done
        finished, pending = wait(pending, timeout=GUARD, return_when=FIRST_COMPLETED)
        if not finished:
            break
    done = [f for f in futures if f.done()]
    assert len(done) >= n, (
        f"only {len(done)} of {len(futures)} usage posts answered while the ledger was blocked; "
        f"{n} should have been refused at once"
    )
    return done


@contextmanager
def opened_at_exit(gate: threading.Event) -> Iterator[None]:
    """Open the gate when the block ends, even by a failure, before the pool waits for its threads."""
    try:
        yield
    finally:
        gate.set()


def refused(response: Any, retry_after: str = "3") -> bool:
    return (
        response.status_code == 503
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["code"] == "ingest_saturated"
        and response.headers.get("retry-after") == retry_after
    )


def test_a_flood_under_a_blocked_ledger_is_refused_and_the_api_keeps_answering(world) -> None:
    client, ledger, key = world
    ledger.gate = threading.Event()
    with ThreadPoolExecutor(FLOOD + 8) as pool, opened_at_exit(ledger.gate):
        flood = [pool.submit(post_usage, client, message(key, n)) for n in range(FLOOD)]
        # the ledger is blocked: only the posts past the bounds can answer, and they must, at once
        done = at_least(flood, FLOOD - WAITING)
        assert not ledger.gate.is_set()
        refusals = [f.result() for f in done]
        assert all(refused(r) for r in refusals), [(r.status_code, r.text[:100]) for r in refusals]
        assert len(refusals) == FLOOD - WAITING
        waiting = [f for f in flood if not f.done()]
        assert len(waiting) == WAITING

        # health and reads answer while ingestion is saturated
        for path in ("/healthz", "/readyz"):
            r = answered(pool, lambda path=path: client.get(path), f"GET {path}")
            assert r.status_code == 200, r.text
        contracts = answered(pool, lambda: client.get("/v1/contracts", headers=auth("tok-provider")),
                             "GET /v1/contracts")
        assert contracts.status_code == 200 and CONTRACT in contracts.text
        one = answered(pool, lambda: client.get(f"/v1/contracts/{CONTRACT}", headers=auth("tok-customer")),
                       "GET /v1/contracts/{id}")
        assert one.status_code == 200 and one.json()["status"] == "ACTIVE"
        metrics = answered(pool, lambda: client.get("/metrics"), "GET /metrics")
        assert f'ledgerhub_usage_messages_total{{outcome="saturated"}} {FLOOD - WAITING}.0' in metrics.text

        # the wait=false queue is bounded too: PENDING messages in all, then 503
        queued = [post_usage(client, message(key, 100 + n), wait="false") for n in range(PENDING - WAITING)]
        assert [r.json()["status"] for r in queued] == ["queued"] * (PENDING - WAITING)
        assert refused(post_usage(client, message(key, 200), wait="false"))
        assert all(not f.done() for f in waiting) and not ledger.gate.is_set()

        ledger.gate.set()
        committed = [f.result(timeout=GUARD) for f in waiting]
    assert all(r.status_code == 202 and r.json()["accepted"] == 1 for r in committed), committed
    # a refused message left nothing behind: sent again, it is accepted (not a duplicate, not a replay)
    first_refused = next(n for n, f in enumerate(flood) if refused(f.result()))
    again = post_usage(client, message(key, first_refused))
    assert again.status_code == 202 and again.json()["accepted"] == 1, again.text
    again = post_usage(client, message(key, 200))
    assert again.status_code == 202 and again.json()["accepted"] == 1, again.text
    # the queued ones were committed: a replay gets their answer
    replay = post_usage(client, message(key, 100))
    assert replay.status_code == 202 and replay.json()["accepted"] == 1


def test_the_edge_backlog_is_bounded(tmp_path: Path) -> None:
    """Posts that cannot even get one of ingestion's threads are refused, not queued without end: with the
    asset lookup (on the edge thread) blocked, the edge threads and backlog fill and the rest get 503."""
    inner = embedded_ledger(tmp_path / "ledger")
    release = threading.Event()

    class SlowLookups(ControlledLedger):
        blocking = False

        def evaluate(self, fn: str, args: Any = (), *, as_org: str) -> bytes:
            if fn == "GetAsset" and self.blocking:
                assert release.wait(GUARD), "the test never released the lookups"
            return super().evaluate(fn, args, as_org=as_org)

    ledger = SlowLookups(inner)
    settings = hub_settings(tmp_path, ingest_edge_threads=1, ingest_edge_backlog=1,
                            ingest_retry_after_seconds=2)
    key = make_device_key("edge")
    try:
        with hub_client(settings, ledger, background=False) as client:
            setup_contract(client, key)
            ledger.blocking = True  # the asset is not cached yet: its first lookup blocks on the edge thread
            with ThreadPoolExecutor(8) as pool, opened_at_exit(release):
                posts = [pool.submit(post_usage, client, message(key, n)) for n in range(8)]
                done = at_least(posts, 6)
                assert not release.is_set()
                assert all(refused(f.result(), "2") for f in done), [f.result().text for f in done]
                r = answered(pool, lambda: client.get("/healthz"), "GET /healthz")
                assert r.status_code == 200
                release.set()
                results = [f.result(timeout=GUARD) for f in posts]
            assert sorted(r.status_code for r in results) == [202, 202] + [503] * 6
    finally:
        release.set()
        inner.close()
