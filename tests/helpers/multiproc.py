"""Several hub processes against one PostgreSQL database: the pieces the multiprocess fault tests need.

The embedded ledger is one process's SQLite file (it takes an exclusive lock), so replicas cannot each open
it. In production, replicas share a ledger the way Fabric gives one to every client: over the network. The
tests model that: the test process owns the embedded ledger and serves `evaluate` / `submit` / `tx` to the
worker processes over `multiprocessing.connection` (`LedgerServer` / `RemoteLedger`), like a gateway. Each
worker is a real OS process with its own database connections, so PostgreSQL row locks
(`FOR UPDATE SKIP LOCKED`) and the scheduler's DB lease are exercised for real across processes.

Workers: `python -m tests.helpers.multiproc dispatch NAME` and `python -m tests.helpers.multiproc lease NAME`
(settings in the environment, see `main`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

AUTHKEY = b"ledgerhub-multiproc-test"


class LedgerServer:
    """Serves one ledger to worker processes; `go` releases all workers at once when `expected` are in."""

    def __init__(self, ledger: Any, expected: int) -> None:
        self.ledger = ledger
        self.expected = expected
        self.listener = Listener(("127.0.0.1", 0), authkey=AUTHKEY)
        self.address = self.listener.address
        self._ready = 0
        self._go = threading.Event()
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> LedgerServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    op, args, kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    if op == "go":
                        with self._lock:
                            self._ready += 1
                            if self._ready >= self.expected:
                                self._go.set()
                        result: Any = self._go.wait(60)
                    elif op == "network_id":
                        result = self.ledger.network_id
                    else:
                        result = getattr(self.ledger, op)(*args, **kwargs)
                    conn.send(("ok", result))
                except Exception as exc:  # the worker re-raises it
                    conn.send(("err", exc))

    def close(self) -> None:
        self._stop = True
        self.listener.close()


class RemoteLedger:
    """The Ledger protocol's calls the delivery engine makes, forwarded to a `LedgerServer`."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._conn = Client(address, authkey=AUTHKEY)
        self._lock = threading.Lock()
        self.network_id = self._call("network_id")

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((op, args, kwargs))
            status, value = self._conn.recv()
        if status == "err":
            raise value
        return value

    def evaluate(self, fn: str, args: Any = (), *, as_org: str) -> bytes:
        return self._call("evaluate", fn, list(args), as_org=as_org)

    def submit(self, fn: str, args: Any = (), *, as_org: str, transient: Any = None) -> Any:
        return self._call("submit", fn, list(args), as_org=as_org)

    def tx(self, tx_id: str) -> Any:
        return self._call("tx", tx_id)

    def height(self) -> int:
        return self._call("height")

    def events(self, since_block: int = 0, *, timeout: float | None = None) -> Any:
        raise NotImplementedError("events are consumed by the ledger's owner in these tests")

    def go(self) -> bool:
        return self._call("go")

    def close(self) -> None:
        self._conn.close()


def run_dispatcher(name: str) -> None:
    """Dispatch due outbox rows until none is open for a while; connectors from LEDGERHUB_CONNECTORS."""
    from hub.config import load_settings
    from hub.delivery.dispatcher import DeliveryOptions
    from hub.delivery.service import DeliveryService
    from hub.store.session import make_engine, make_sessionmaker

    host, port = os.environ["LEDGER_ADDRESS"].split(":")
    ledger = RemoteLedger((host, int(port)))
    settings = load_settings()
    engine = make_engine(settings.effective_database_url)
    options = DeliveryOptions(**json.loads(os.environ["DELIVERY_OPTIONS"]))
    service = DeliveryService(ledger, make_sessionmaker(engine), settings, options=options, worker=name)
    assert ledger.go(), "not all workers arrived"
    idle_since = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if service.dispatch_once() == 0:
            if service.open_count() == 0:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:
                    break
            time.sleep(0.02)
        else:
            idle_since = None
    service.dispatcher.close()
    engine.dispose()
    ledger.close()


def run_lease_worker(name: str) -> None:
    """The real HubScheduler and DB lease, with one probe job that records when it starts and ends."""
    from sqlalchemy import text

    from hub.scheduler import HubScheduler, Lease
    from hub.store.session import make_engine, make_sessionmaker

    engine = make_engine(os.environ["LEDGERHUB_DATABASE_URL"])
    db = make_sessionmaker(engine)
    job_seconds = float(os.environ.get("PROBE_JOB_SECONDS", "0.1"))

    def probe(_services: Any) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO lease_probe (holder, phase) VALUES (:h, 'start')"), {"h": name})
        time.sleep(job_seconds)  # the job's work; the lease must keep everyone else out meanwhile
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO lease_probe (holder, phase) VALUES (:h, 'end')"), {"h": name})

    class NoPeriods:  # this process has no ledger: the built-in close job finds nothing to close
        def run_once(self) -> list[str]:
            return []

    lease = Lease(db, name, ttl_seconds=float(os.environ.get("LEASE_TTL", "2")))
    scheduler = HubScheduler(None, NoPeriods(), lease, close_every_seconds=3600)
    scheduler.add_job("probe", probe, float(os.environ.get("PROBE_EVERY", "0.2")))
    scheduler.start()
    try:
        time.sleep(float(os.environ.get("RUN_SECONDS", "10")))
    finally:
        scheduler.stop()
        engine.dispose()


if __name__ == "__main__":
    command, worker = sys.argv[1], sys.argv[2]
    {"dispatch": run_dispatcher, "lease": run_lease_worker}[command](worker)
