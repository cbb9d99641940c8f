"""The plain-database meter: what the ledger costs (`ledgerhub bench`, ADR 0040).

The same signed usage messages that the LedgerHub benchmarks send are stored the way a conventional
metering service stores events: one PostgreSQL table with a unique key per event (device, reading id),
one batched `INSERT … ON CONFLICT DO NOTHING` per message (a repeated reading is dropped, not counted
twice), the device signature checked at the edge with the hub's own code (`UsageMessage` schema, the
RFC 8785 bytes of `hub.ingest_message`, `chaincode.signature.verify_signed_bytes`), the answer sent after the
commit. It runs as its own HTTP service (FastAPI on uvicorn, like the hub) in its own process, against a
throwaway PostgreSQL cluster with fsync and synchronous commit on (hub/bench/pgserver.py), driven by the
same load generator, sizes and concurrency as the hub. What it leaves out is everything the ledger adds:
endorsement, ordering, validation on three peers, the contract's rating aggregates, proofs.

`python -m hub.bench.plaindb --port P --dsn DSN` runs the service; `measure()` runs one load through it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

SCHEMA = """
CREATE TABLE IF NOT EXISTS device (id text PRIMARY KEY, public_key text NOT NULL);
CREATE TABLE IF NOT EXISTS usage_event (
    device_id text NOT NULL,
    reading_id text NOT NULL,
    message_id text NOT NULL,
    metric text NOT NULL,
    quantity numeric NOT NULL,
    at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, reading_id)
);
"""
INSERT = """
INSERT INTO usage_event (device_id, reading_id, message_id, metric, quantity, at)
SELECT %s, r, %s, m, q, t
  FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::timestamptz[]) AS x(r, m, q, t)
ON CONFLICT (device_id, reading_id) DO NOTHING
RETURNING reading_id
"""
TOKEN = "plain-device"  # noqa: S105 - a benchmark's bearer token, not a secret


def unavailable() -> str | None:
    """None when a PostgreSQL server can be started here, else why the plain-database rows are skipped."""
    from hub.bench.pgserver import pg_bin

    return None if pg_bin() else "PostgreSQL server binaries not found (Debian package postgresql)"


# --- the service ------------------------------------------------------------------------------------


class _Pool:
    """A fixed set of connections handed out one per request (psycopg connections are not shared)."""

    def __init__(self, dsn: str, size: int) -> None:
        import psycopg

        self._free: queue.Queue[Any] = queue.Queue()
        for _ in range(size):
            self._free.put(psycopg.connect(dsn))

    @contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._free.get()
        try:
            yield conn
        finally:
            self._free.put(conn)


def create_app(dsn: str, pool_size: int = 16) -> Any:
    from fastapi import FastAPI, Header, HTTPException
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError

    from chaincode.errors import ChaincodeError
    from chaincode.signature import verify_signed_bytes
    from hub.ingest_message import UsageMessage
    from hub.ingest_message import signed_bytes as _signed_bytes

    app = FastAPI()
    pool = _Pool(dsn, pool_size)
    keys: dict[str, str] = {}
    with pool.connection() as conn:
        conn.execute(SCHEMA)
        conn.commit()

    def authorise(authorization: str | None) -> None:
        if authorization != f"Bearer {TOKEN}":
            raise HTTPException(401, "unauthorised")

    @app.post("/devices")
    def register(body: dict[str, str], authorization: str | None = Header(None)) -> dict[str, str]:
        authorise(authorization)
        with pool.connection() as conn:
            conn.execute("INSERT INTO device VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (body["id"], body["public_key"]))
            conn.commit()
        return {"id": body["id"]}

    def public_key(device_id: str) -> str | None:
        key = keys.get(device_id)
        if key is None:
            with pool.connection() as conn:
                row = conn.execute("SELECT public_key FROM device WHERE id = %s", (device_id,)).fetchone()
                conn.rollback()
            if row is not None:
                key = keys[device_id] = row[0]
        return key

    @app.post("/usage", status_code=202)
    def usage(raw: dict[str, Any], authorization: str | None = Header(None)) -> Any:
        authorise(authorization)
        try:
            message = UsageMessage.model_validate(raw)
        except ValidationError as exc:
            return JSONResponse({"code": "invalid_request", "errors": len(exc.errors())}, 422)
        key = public_key(message.device_id)
        if key is None:
            return JSONResponse({"code": "unknown_asset"}, 404)
        try:
            verify_signed_bytes(raw.get("signature"), _signed_bytes(raw), key)
        except ChaincodeError:
            return JSONResponse({"code": "bad_signature"}, 400)
        rs = message.readings
        params = (message.device_id, message.message_id, [r.id for r in rs], [r.metric for r in rs],
                  [r.quantity for r in rs], [r.timestamp for r in rs])
        with pool.connection() as conn:
            stored = {row[0] for row in conn.execute(INSERT, params).fetchall()}
            conn.commit()
        return {"accepted": len(stored), "duplicates": [r.id for r in rs if r.id not in stored]}

    @app.get("/count")
    def count(prefix: str, authorization: str | None = Header(None)) -> dict[str, int]:
        authorise(authorization)
        with pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM usage_event WHERE device_id LIKE %s",
                               (prefix + "%",)).fetchone()
            conn.rollback()
        return {"readings": int(row[0])}

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="the plain-database metering service of the bench")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.dsn), host="127.0.0.1", port=args.port, log_level="warning")


# --- one measurement -------------------------------------------------------------------------------


def measure(
    *, messages_count: int, readings_per_message: int, concurrency: int, devices: int = 4, tag: str = "plain"
) -> dict[str, Any]:
    """Committed readings/s and request→commit latency of the plain service over HTTP, the CPU seconds of
    the service and of PostgreSQL during the load, and afterwards the rows in the table (`db_readings`):
    every reading sent must be there once."""
    from hub.bench.pgserver import running_postgres
    from hub.bench.scenarios import _free_port, drive, process_cpu_seconds, traffic_for
    from hub.bench.traffic import Device

    with running_postgres(durable=True) as server, tempfile.TemporaryDirectory() as tmp:
        dsn = f"host=127.0.0.1 port={server.port} user={server.user} dbname=postgres"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "service.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub.bench.plaindb", "--port", str(port), "--dsn", dsn],
                stdout=subprocess.DEVNULL, stderr=err,
            )
        try:
            _wait_ready(url, proc, log)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            fleet = [Device.new(f"{tag}-dev-{i}") for i in range(devices)]
            with httpx.Client(base_url=url, headers=auth) as c:
                for d in fleet:
                    body = {"id": d.device_id, "public_key": d.public_pem}
                    c.post("/devices", json=body).raise_for_status()
            traffic = traffic_for(fleet, messages_count, readings_per_message, dt.datetime.now(dt.UTC))
            pg_pids = server.pids()
            pg0 = sum(process_cpu_seconds(p) for p in pg_pids)
            cpu0, client0 = process_cpu_seconds(proc.pid), time.process_time()
            latencies, accepted, wall = drive(url, "/usage", TOKEN, traffic, concurrency)
            service_cpu = process_cpu_seconds(proc.pid) - cpu0
            pg_cpu = sum(process_cpu_seconds(p) for p in pg_pids) - pg0
            client_cpu = time.process_time() - client0
            with httpx.Client(base_url=url, headers=auth) as c:
                counted = c.get("/count", params={"prefix": f"{tag}-dev-"})
                counted.raise_for_status()
                db_readings = counted.json()["readings"]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    latencies.sort()
    return {
        "readings": accepted,
        "messages": len(traffic),
        "seconds": round(wall, 3),
        "readings_per_second": round(accepted / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "readings_sent": len(traffic) * readings_per_message,
        "db_readings": db_readings,
        "service_cpu_seconds": round(service_cpu, 2),
        "postgres_cpu_seconds": round(pg_cpu, 2),
        "client_cpu_seconds": round(client_cpu, 2),
        "settings": {"readings_per_message": readings_per_message, "concurrency": concurrency,
                     "durable": True, "pool": 16},
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"plain-database service did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
