"""The measurements. Each returns plain numbers; `hub.bench` prints and stores them.

Ingestion drives a real hub process over HTTP (the load generator runs in this process, the hub in another,
so they do not share a GIL); the other scenarios drive the embedded ledger and the delivery engine in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hub.bench.traffic import CUSTOMER, PROVIDER, Device, bench_contract, messages, month_start
from hub.billing.client import ContractClient

TOKENS = {
    "b-provider": {"org": PROVIDER, "role": "provider"},
    "b-customer": {"org": CUSTOMER, "role": "customer"},
    "b-device": {"org": PROVIDER, "role": "device"},
    "b-operator": {"org": PROVIDER, "role": "operator"},
}


def p256_verifications_per_second(seconds: float = 2.0) -> float:
    """The physical reference: how many device signatures one core can check."""
    key = ec.generate_private_key(ec.SECP256R1())
    data = b'{"device_id":"d","message_id":"m","readings":[]}'
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        count += 200
    return count / (time.perf_counter() - start)


def signing_rates(count: int) -> dict[str, Any]:
    """Signatures per second: in-process software key vs the PKCS#11 signer on a SoftHSM2 token, the raw
    signer and through the key manager (status check + key audit log), measured in the same run."""
    # In a child process: the PKCS#11 bench makes a token of its own and points the process's SoftHSM2
    # library at it (SOFTHSM2_CONF, C_Initialize); done in-process it left the caller's library pointed at a
    # deleted token directory, and every later use of the caller's own token failed (GeneralError).
    proc = subprocess.run(
        [sys.executable, "-m", "hub.keys.bench", "--count", str(count)],
        capture_output=True, text=True, check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except ValueError:  # SoftHSM2 missing: say so in the results, do not fail the whole run
        from hub.keys.bench import measure
        from hub.keys.signer import SoftwareSigner

        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"software_raw": measure(SoftwareSigner(), count), "pkcs11_error": reason}
    return {k: v for k, v in result.items() if k.endswith(("_raw", "_managed"))}


# --- ingestion over HTTP ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    """`ledgerhub serve` in its own process with its own data dir."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "LEDGERHUB_DATA_DIR": str(data_dir),
            "LEDGERHUB_TOKENS": json.dumps(TOKENS),
            "LEDGERHUB_SCHEDULER_ENABLED": "false",
        }
        env.update({f"LEDGERHUB_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 180  # a loaded 2-core machine took more than 60 s
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # first: reading stderr of a live process waits for it forever
                err = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"hub did not become ready: {err}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc). On a shared machine wall-clock rates move
    with everyone else's load; CPU seconds per reading are what the hub itself spends."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """`py-spy record` attached to the hub for the duration of a load (the profile hook): a flame graph
    (SVG) or speedscope/raw file of where the hub process spends its time, sampled from outside."""

    def __init__(self, pid: int, out: Path | None, rate: int = 50) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if out is None:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(out.suffix, "raw")
        exe = Path(sys.executable).with_name("py-spy")
        self.proc = subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--threads",
             "--format", fmt, "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let it attach before the load starts

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _post(client: httpx.Client, url: str, token: str, body: Any) -> httpx.Response:
    return client.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def ingest(
    *,
    messages_count: int,
    readings_per_message: int,
    batch_max_messages: int,
    concurrency: int,
    devices: int = 4,
    profile: Path | None = None,
    hub_settings: dict[str, Any] | None = None,
    tag: str = "bench",
    cpu_probe: Callable[[], dict[str, float]] | None = None,
    profile_pid: int | None = None,
) -> dict[str, Any]:
    """Committed readings per second and request→commit latency through the HTTP API, plus the hub
    process's CPU seconds during the load (`profile`: also record it with py-spy into that file; of
    `profile_pid` instead of the hub when given). Afterwards the ledger is asked how many readings the
    contract holds (`ledger_readings`): every reading sent must be there.

    `tag` names the devices and the contract, so several runs can share one ledger (a Fabric network);
    `cpu_probe` returns CPU seconds per named process group, read before and after the load."""
    with tempfile.TemporaryDirectory(prefix="ledgerhub-bench-") as tmp:
        hub = HubProcess(Path(tmp) / "data", batch_max_messages=batch_max_messages, **(hub_settings or {}))
        try:
            now = dt.datetime.now(dt.UTC)
            fleet = [Device.new(f"{tag}-dev-{i}") for i in range(devices)]
            contract_id = f"ctr-{tag}"
            with httpx.Client(base_url=hub.url) as c:
                for d in fleet:
                    _post(c, "/v1/assets", "b-provider", d.asset()).raise_for_status()
                start = (month_start(now) - dt.timedelta(days=1)).replace(day=1).date()
                contract = bench_contract(contract_id, fleet, start)
                _post(c, "/v1/contracts", "b-provider", contract).raise_for_status()
                _post(c, f"/v1/contracts/{contract_id}/accept", "b-customer", None).raise_for_status()
            traffic = traffic_for(fleet, messages_count, readings_per_message, now)
            profiler = Profiler(profile_pid or hub.proc.pid, profile)
            groups0 = cpu_probe() if cpu_probe else {}
            cpu0, client0 = process_cpu_seconds(hub.proc.pid), time.process_time()
            try:
                latencies, accepted, wall = drive(hub.url, "/v1/usage", "b-device", traffic, concurrency)
                hub_cpu = process_cpu_seconds(hub.proc.pid) - cpu0
                client_cpu = time.process_time() - client0
                groups1 = cpu_probe() if cpu_probe else {}
            finally:
                profiler.stop()
            metrics = httpx.get(hub.url + "/metrics").text
            with httpx.Client(base_url=hub.url) as c:
                usage = c.get(
                    f"/v1/contracts/{contract_id}/usage", headers={"Authorization": "Bearer b-provider"}
                )
                usage.raise_for_status()
                ledger_readings = int(usage.json()["cost"]["readings"])
        finally:
            hub.stop()
    latencies.sort()
    return {
        "readings": accepted,
        "messages": len(traffic),
        "seconds": round(wall, 3),
        "readings_per_second": round(accepted / wall, 1),
        "hub_cpu_seconds": round(hub_cpu, 2),
        "readings_per_hub_cpu_second": round(accepted / hub_cpu, 1) if hub_cpu > 0 else None,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "ledger_transactions": _metric_sum(metrics, "ledgerhub_usage_batch_messages_count"),
        "readings_sent": len(traffic) * readings_per_message,
        "ledger_readings": ledger_readings,
        "client_cpu_seconds": round(client_cpu, 2),
        **({"cpu_seconds": {k: round(groups1[k] - groups0[k], 2) for k in groups1 if k in groups0}}
           if cpu_probe else {}),
        "settings": {
            "readings_per_message": readings_per_message,
            "batch_max_messages": batch_max_messages,
            "concurrency": concurrency,
        },
    }


def traffic_for(
    fleet: list[Device], messages_count: int, readings_per_message: int, now: dt.datetime
) -> list[dict[str, Any]]:
    """The signed messages of one load: `messages_count` spread over the fleet, readings in this month."""
    window = (month_start(now), now - dt.timedelta(seconds=30))
    per_device = messages_count // len(fleet)
    return [
        m
        for i, d in enumerate(fleet)
        for m in messages(d, per_device, readings_per_message, start=window[0], end=window[1], prefix=f"d{i}")
    ]


def drive(url: str, path: str, token: str, traffic: list[dict[str, Any]], concurrency: int
          ) -> tuple[list[float], int, float]:
    """Post every message from `concurrency` threads, each waiting for its answer (202 expected): the
    request→answer latencies, the readings accepted, the wall seconds. The hub and the plain-database
    meter are driven by this same code."""
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    local = threading.local()

    def send(message: dict[str, Any]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url)
        t0 = time.perf_counter()
        r = _post(client, path, token, message)
        elapsed = time.perf_counter() - t0
        if r.status_code != 202:
            raise RuntimeError(f"usage refused: {r.status_code} {r.text[:300]}")
        with lock:
            latencies.append(elapsed)
            accepted[0] += r.json()["accepted"]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, traffic))
    return latencies, accepted[0], time.perf_counter() - started


def _metric_sum(text: str, name: str) -> float | None:
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


# --- period close ------------------------------------------------------------------------------------


def _embedded(data_dir: Path) -> Any:
    from hub.keys.signer import SoftwareSigner
    from hub.ledger.embedded import EmbeddedLedger

    signers = {org: SoftwareSigner() for org in (PROVIDER, CUSTOMER, "AuditorMSP")}
    return EmbeddedLedger(data_dir, signers, chaincode_orgs=(PROVIDER, CUSTOMER))


def period_close(
    readings: int, *, per_message: int = 1000, per_tx: int = 20, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Load `readings` into one closed-over period, then time CloseBillingPeriod alone."""
    with tempfile.TemporaryDirectory(prefix="ledgerhub-close-") as tmp:
        ledger = _embedded(Path(tmp) / "ledger")
        client = ContractClient(ledger)
        try:
            device = Device.new("close-dev")
            client.register_asset(device.asset(), as_org=PROVIDER)
            contract = bench_contract("ctr-close", [device], dt.date(2020, 1, 1))
            client.propose_contract(contract, as_org=PROVIDER)
            client.accept_contract("ctr-close", as_org=CUSTOMER)
            start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            per_message = min(per_message, readings)
            stream = messages(
                device,
                readings // per_message,
                per_message,
                start=start,
                end=start + dt.timedelta(days=30),
                prefix="c",
            )
            batch: list[dict[str, Any]] = []
            batches = loaded = 0
            load_started = time.perf_counter()
            for message in stream:
                batch.append(message)
                if len(batch) == per_tx:
                    client.record_usage(batch, as_org=PROVIDER)
                    loaded += len(batch) * per_message
                    batches += 1
                    batch = []
                    if progress:
                        progress(loaded)
            if batch:
                client.record_usage(batch, as_org=PROVIDER)
                loaded += len(batch) * per_message
                batches += 1
            load_seconds = time.perf_counter() - load_started
            started, cpu0 = time.perf_counter(), time.process_time()
            invoice = client.close_billing_period("ctr-close", "2020-01", as_org=PROVIDER)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
            assert invoice.readings == loaded, (invoice.readings, loaded)
        finally:
            ledger.close()
    return {
        "readings": loaded,
        "batches": batches,
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        "load_seconds": round(load_seconds, 2),
        "load_readings_per_second": round(loaded / load_seconds, 1),
    }


# --- delivery -------------------------------------------------------------------------------------------


def delivery(invoices: int, latency_ms: int = 50, concurrency: int = 8) -> dict[str, Any]:
    """Invoices delivered per second to the SAP and Oracle emulators, each answering `latency_ms` late."""
    from connectors.emulators.faults import FaultPlan
    from connectors.emulators.oracle_rest import OracleRestEmulator
    from connectors.emulators.sap_soap import SapSoapEmulator
    from hub.config import Settings
    from hub.delivery.dispatcher import DeliveryOptions
    from hub.delivery.service import DeliveryService
    from hub.store.session import make_engine, make_sessionmaker, migrate

    slow = FaultPlan(probability=1.0, kinds=("slow",), seed=1, slow_seconds=latency_ms / 1000)
    parties = {
        PROVIDER: {"name": "Provider", "erp_ids": {"sap_supplier": "1", "oracle_supplier": "Provider"}},
        CUSTOMER: {
            "name": "Customer",
            "erp_ids": {"sap_customer": "10100001", "oracle_customer_number": "1008"},
        },
    }
    with (
        tempfile.TemporaryDirectory(prefix="ledgerhub-dlv-") as tmp,
        SapSoapEmulator() as sap,
        OracleRestEmulator(shared_dir=None) as oracle,
    ):
        ledger = _embedded(Path(tmp) / "ledger")
        client = ContractClient(ledger)
        try:
            device = Device.new("dlv-dev")
            client.register_asset(device.asset(), as_org=PROVIDER)
            client.propose_contract(bench_contract("ctr-dlv", [device], dt.date(1990, 1, 1)), as_org=PROVIDER)
            client.accept_contract("ctr-dlv", as_org=CUSTOMER)
            year, month = 1990, 1
            for _ in range(invoices):
                client.close_billing_period("ctr-dlv", f"{year:04d}-{month:02d}", as_org=PROVIDER)
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            sap.faults.configure(slow)
            oracle.faults.configure(slow)
            settings = Settings(
                data_dir=Path(tmp) / "hub",
                parties=parties,
                connectors={
                    "sap-soap": {
                        "wsdl": sap.wsdl_url,
                        "endpoint": sap.endpoint,
                        "timeout": 5,
                        "company_code": "1010",
                    },
                    "oracle-rest": {
                        "base_url": oracle.base_url,
                        "timeout": 5,
                        "auth": {"type": "basic", "username": "integration", "password": "secret"},
                    },
                },
            )
            engine = make_engine(settings.effective_database_url)
            migrate(engine)
            options = DeliveryOptions(concurrency=concurrency, batch=64, poll_seconds=0.01)
            service = DeliveryService(ledger, make_sessionmaker(engine), settings, options=options)
            service.consume_events()
            started = time.perf_counter()
            service.run_until_idle()
            seconds = time.perf_counter() - started
            delivered = sum(1 for r in service.list() if r["state"] == "delivered")
            service.dispatcher.close()
        finally:
            ledger.close()
    return {
        "invoices": invoices,
        "deliveries": delivered,
        "seconds": round(seconds, 3),
        "invoices_per_second": round(invoices / seconds, 2),
        "deliveries_per_second": round(delivered / seconds, 2),
        "erp_latency_ms": latency_ms,
        "concurrency": concurrency,
    }


# --- the contract alone -----------------------------------------------------------------------------------


def contract_cpu(readings: int, per_message: int = 100) -> dict[str, Any]:
    """RecordUsage on the in-memory stub (no ledger, no HTTP): the chaincode's own CPU cost per reading,
    new and replayed (all duplicates), in CPU seconds so other load on the machine does not move it much.
    This is the ceiling for any ledger that runs this contract in one Python process."""
    from chaincode.contract import invoke
    from chaincode.stub import InMemoryStub, InMemoryWorld

    world = InMemoryWorld()
    count = [0]

    def run(fn: str, body: Any, org: str = PROVIDER, at: dt.datetime | None = None) -> tuple[bytes, float]:
        count[0] += 1
        stub = InMemoryStub(
            world, tx_id=f"bench-{count[0]:06d}", timestamp=at or now, creator_msp_id=org
        )
        arg = json.dumps(body)
        c0 = time.process_time()
        out = invoke(stub, fn, [arg])
        cpu = time.process_time() - c0
        stub.commit()
        return out, cpu

    now = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
    device = Device.new("cpu-dev")
    run("RegisterAsset", device.asset())
    run("ProposeContract", bench_contract("ctr-cpu", [device], dt.date(2020, 1, 1)))
    run("AcceptContract", {"contract_id": "ctr-cpu"}, org=CUSTOMER)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    per_message = min(per_message, readings)
    batch = {"messages": list(messages(device, readings // per_message, per_message, start=start,
                                       end=start + dt.timedelta(days=30), prefix="cpu"))}
    out, new_cpu = run("RecordUsage", batch)
    accepted = json.loads(out)["accepted"]
    _, dup_cpu = run("RecordUsage", batch)
    return {
        "readings": accepted,
        "readings_per_message": per_message,
        "new_cpu_seconds": round(new_cpu, 3),
        "new_readings_per_cpu_second": round(accepted / new_cpu),
        "duplicate_cpu_seconds": round(dup_cpu, 3),
        "duplicate_readings_per_cpu_second": round(accepted / dup_cpu),
    }
