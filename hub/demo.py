"""`ledgerhub demo`: the product story, end to end, through the real HTTP API, on the embedded ledger or
(`--ledger fabric`) on a real Fabric network that the demo brings up and tears down.

A hospital leases an MRI scanner pay-per-use instead of buying it for $250,000. The provider registers the
scanner, proposes a USD contract (platform fee, graduated per-scan price, $85 per operating hour, a
minimum commitment, sales tax); the hospital accepts (both orgs endorse). A month of readings goes into
the scanner gateway's local queue and the device SDK (`ledgerhub.device`) sends them to `POST /v1/usage`
in signed batches; a replayed message, a re-sent reading and a forged message show what is refused and
why. The operator closes the period and the invoice the ledger issued is shown with where every number
came from.

Other areas extend the story with `register_step` (e.g. "the invoice arrives in the SAP emulator"): each
step gets the `DemoContext` after the invoice is issued. `hub.delivery.demo.demo_step` (the invoice
delivered to the ERP emulators) always runs after the registered steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.panel import Panel

with warnings.catch_warnings():  # Starlette's notice about its own test client is not for demo users
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.api.app import create_app, default_signers
from hub.audit.verify import verify_bundle
from hub.config import Settings, TokenGrant
from hub.delivery.demo import demo_step as delivery_step
from hub.ledger import open_ledger
from ledgerhub.device import DeviceClient, PemSigner, sign_message

PROVIDER, CUSTOMER, AUDITOR = "ProviderMSP", "CustomerMSP", "AuditorMSP"
DEVICE_ID = "mri-boston-01"
CONTRACT_ID = "ctr-mri-boston-001"
PURCHASE_PRICE = Decimal("250000.00")
DEVICE_BATCH = 100  # readings per message the demo's device SDK sends
DEMO_TOKENS = {
    "demo-provider": {"org": PROVIDER, "role": "provider"},
    "demo-customer": {"org": CUSTOMER, "role": "customer"},
    "demo-auditor": {"org": AUDITOR, "role": "auditor"},
    "demo-operator": {"org": PROVIDER, "role": "operator"},
    "demo-device": {"org": PROVIDER, "role": "device"},
}


@dataclass
class DemoContext:
    """What a demo step may use: the running API client, the settings, tokens and what happened so far."""

    client: TestClient
    settings: Settings
    console: Console
    contract: dict[str, Any]
    invoice: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    services: Any = None  # hub.api.deps.Services of the running app (typed fields)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer demo-{role}"}


DemoStep = Callable[[DemoContext], None]
_STEPS: list[DemoStep] = []


def register_step(step: DemoStep) -> None:
    """Add a step that runs after the invoice is issued (in registration order)."""
    if step not in _STEPS:
        _STEPS.append(step)


def extra_steps() -> list[DemoStep]:
    """The registered steps, then the delivery step (always part of the story)."""
    steps = list(_STEPS)
    if delivery_step not in steps:
        steps.append(delivery_step)
    return steps


@dataclass
class DemoResult:
    invoice: dict[str, Any]
    messages: int
    readings: int
    transactions: int
    blocks: int
    refusals: dict[str, str]
    replay_identical: bool
    audit_verified: bool | None = None
    endorsers: list[str] = field(default_factory=list)  # of the invoice's transaction, "MSP (CN)"


# --- the scenario -----------------------------------------------------------------------------------


def plan(start: str) -> dict[str, Any]:
    return {
        "id": CONTRACT_ID, "provider": PROVIDER, "customer": CUSTOMER, "assets": [DEVICE_ID],
        "currency": "USD", "timezone": "America/New_York", "start": start, "end": None,
        "metrics": {"scan": {"aggregation": "sum", "unit": "scan"},
                    "operating_hours": {"aggregation": "sum", "unit": "h"}},
        "charges": [
            {"id": "platform", "model": "flat", "amount": "750.00"},
            {"id": "scans", "model": "graduated", "metric": "scan",
             "tiers": [{"up_to": "150", "unit_price": "28.00"}, {"up_to": "300", "unit_price": "22.00"},
                       {"up_to": None, "unit_price": "16.00"}]},
            {"id": "hours", "model": "per_unit", "metric": "operating_hours", "unit_price": "85.00"},
        ],
        "minimum_commitment": "9000.00", "maximum": None,
        "tax": {"rate": "0.0625", "category": "S"},
        "erp": {"provider": "sap-soap", "customer": "oracle-rest"},
    }


def previous_month(now: dt.datetime, tz: ZoneInfo) -> tuple[str, dt.date, int]:
    local = now.astimezone(tz).date().replace(day=1)
    last_day = local - dt.timedelta(days=1)
    first = last_day.replace(day=1)
    return f"{first.year:04d}-{first.month:02d}", first, last_day.day


def month_of_readings(first: dt.date, days: int, tz: ZoneInfo, seed: int = 7) -> list[list[dict[str, Any]]]:
    """One message per clinic hour with scans: the scans plus the time the scanner ran, as a gateway
    on the scanner would send them. Deterministic (seeded), so the demo's total is repeatable."""
    rng = random.Random(seed)
    messages: list[list[dict[str, Any]]] = []
    n = 0
    for day in range(days):
        date = first + dt.timedelta(days=day)
        weekend = date.weekday() >= 5
        hours = range(9, 13) if weekend else range(7, 19)
        for hour in hours:
            readings = []
            scans = rng.choice([0, 0, 1, 2] if weekend else [0, 1, 1, 2, 2, 3])
            if not scans:
                continue
            for k in range(scans):
                n += 1
                at = dt.datetime(date.year, date.month, date.day, hour, 5 + 20 * k, tzinfo=tz)
                readings.append({"id": f"r-{n:06d}", "metric": "scan", "quantity": "1",
                                 "timestamp": at.isoformat()})
            n += 1
            at = dt.datetime(date.year, date.month, date.day, hour, 59, tzinfo=tz)
            quarters = scans + rng.choice([0, 0, 1])  # ~15 minutes of magnet time per scan
            readings.append({"id": f"r-{n:06d}", "metric": "operating_hours",
                             "quantity": str(Decimal(quarters) / 4), "timestamp": at.isoformat()})
            messages.append(readings)
    return messages


def sign(key: ec.EllipticCurvePrivateKey, message: dict[str, Any]) -> dict[str, Any]:
    return sign_message(PemSigner(key), message)


def _expect(response: Any, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text}")
    return response.json()


def run_demo(data_dir: Path | None = None, console: Console | None = None, *, workers: int = 8,
             now: dt.datetime | None = None, ledger_kind: str = "embedded") -> DemoResult:
    """`ledger_kind="fabric"`: bring a Fabric network up under the data dir (orderer, three peers, the
    chaincode as a service), run the same story against it through the Gateway, and take it down again."""
    if ledger_kind not in ("embedded", "fabric"):
        raise ValueError(f"unknown ledger {ledger_kind!r}: embedded or fabric")
    console = console or Console()
    now = now or dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="ledgerhub-demo-") as tmp:
        base = Path(data_dir) if data_dir else Path(tmp)
        values: dict[str, Any] = {
            "data_dir": base, "database_url": f"sqlite:///{base / 'hub.sqlite'}",
            "tokens": {k: TokenGrant(**v) for k, v in DEMO_TOKENS.items()}, "scheduler_enabled": False,
        }
        network = _fabric_network(base, console) if ledger_kind == "fabric" else contextlib.nullcontext()
        with network as network_json:
            if network_json is not None:
                values.update(ledger="fabric", fabric_network_dir=network_json)
            settings = Settings(**values)
            ledger = open_ledger(settings, default_signers(settings))
            try:
                app = create_app(settings, ledger, background=False)
                with TestClient(app) as client:
                    return _story(client, settings, ledger, console, workers, now)
            finally:
                ledger.close()


@contextlib.contextmanager
def _fabric_network(base: Path, console: Console) -> Iterator[Path]:
    """A dev Fabric network for the demo's lifetime, on the first free block of ports."""
    from network import manage
    from network.procs import free_port_base

    run_dir = base / "fabric"
    started = time.monotonic()
    console.print("Bringing up a Fabric 3.1.5 network (Raft orderer, peers of ProviderMSP, CustomerMSP, "
                  "AuditorMSP, TLS, chaincode as a service)…")
    info = manage.up(run_dir=run_dir, port_base=free_port_base(), start_chaincode=True)
    console.print(f"   up in {time.monotonic() - started:.0f} s: channel [bold]{info['channel']}[/], "
                  f"chaincode [bold]{info['chaincode']['name']}[/], run dir {run_dir}")
    try:
        yield run_dir / "network.json"
    finally:
        stopped = manage.down(run_dir)  # raises if any node survives
        console.print(f"Fabric network down: {', '.join(stopped)} stopped, run dir removed")


def _story(client: TestClient, settings: Settings, ledger: Any, console: Console, workers: int,
           now: dt.datetime) -> DemoResult:
    tz = ZoneInfo("America/New_York")
    period, first, days = previous_month(now, tz)
    h = {role: {"Authorization": f"Bearer demo-{role}"} for role in
         ("provider", "customer", "auditor", "operator", "device")}
    console.print(Panel.fit(
        "[bold]LedgerHub demo[/]: an MRI scanner leased pay-per-use instead of bought for "
        f"[bold]${PURCHASE_PRICE:,}[/]\nProvider [cyan]{PROVIDER}[/] leases to hospital [cyan]{CUSTOMER}[/]; "
        f"billing period [bold]{period}[/] ({tz.key}); {_ledger_name(settings)}",
        title="pay-per-use"))
    console.print("Demo bearer tokens: " + ", ".join(f"{t} ({g['role']})" for t, g in DEMO_TOKENS.items()))

    device_key = ec.generate_private_key(ec.SECP256R1())
    pem = device_key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    _expect(client.post("/v1/assets", headers=h["provider"], json={
        "id": DEVICE_ID, "description": "MRI scanner 3T, Boston imaging center", "public_key": pem}), 201)
    console.print(f"1. Provider registered asset [bold]{DEVICE_ID}[/] with its device key (P-256)")
    contract = _expect(client.post("/v1/contracts", headers=h["provider"], json=plan(first.isoformat())), 201)
    console.print(f"2. Provider proposed [bold]{CONTRACT_ID}[/] → {contract['status']} "
                  "(USD; $750 platform fee; scans $28 / $22 / $16 by tier; $85 per operating hour; "
                  "$9,000 minimum; 6.25% tax)")
    contract = _expect(client.post(f"/v1/contracts/{CONTRACT_ID}/accept", headers=h["customer"]), 200)
    console.print(f"3. Hospital accepted → [green]{contract['status']}[/] (endorsed by both orgs)")

    # the scanner's gateway: every hour's readings go into its local queue (SQLite) as they happen, and
    # the device SDK sends them in signed batches (ledgerhub.device; `workers` is kept for callers)
    signer = PemSigner(device_key)
    token = next(t for t, grant in DEMO_TOKENS.items() if grant["role"] == "device")
    device = DeviceClient(None, device_id=DEVICE_ID, token=token, signer=signer,
                          queue_path=Path(settings.data_dir) / "device-queue.sqlite", http=client,
                          batch_size=DEVICE_BATCH)
    for readings in month_of_readings(first, days, tz):
        device.add_many(readings)
    total_readings = device.status()["queued"]
    height_before = ledger.height()
    progress = Progress(TextColumn("4. Device SDK sending signed batches"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("readings"), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("usage", total=total_readings)
        while True:
            report = device.flush(max_messages=1)
            progress.advance(task, report.delivered + report.duplicates + report.refused)
            if report.messages == 0:
                break
    sent = device.queue.messages()
    device.close()
    messages = [sign(device_key, m["body"]) for m in sent]
    answers = [m["answer"] for m in sent]
    if any(m["state"] != "answered" or "tx_id" not in (m["answer"] or {}) for m in sent):
        raise RuntimeError(f"the device SDK did not deliver every message: {sent}")
    tx_ids = sorted({a["tx_id"] for a in answers})
    accepted = sum(a["accepted"] for a in answers)
    console.print(f"   {accepted} readings queued on the device and sent in {len(messages)} signed messages "
                  f"of up to {DEVICE_BATCH}, committed in [bold]{len(tx_ids)}[/] RecordUsage transactions "
                  f"(blocks {height_before}–{ledger.height() - 1})")

    refusals: dict[str, str] = {}
    replay = client.post("/v1/usage", headers=h["device"], json=messages[0])
    replay_identical = replay.status_code == 202 and replay.json() == answers[0]
    console.print(f"5. Replay of message {messages[0]['message_id'][:8]}… → {replay.status_code}, the "
                  f"first answer again (tx {replay.json().get('tx_id', '')[:12]}…), nothing written twice")
    resent = sign(device_key, {**messages[1], "message_id": str(uuid.uuid4())})
    r = client.post("/v1/usage", headers=h["device"], json=resent)
    refused = r.json()
    refusals["duplicate"] = refused.get("code", "")
    console.print(f"   Same readings under a new message id → [red]{r.status_code} {refused.get('code')}[/]: "
                  f"{refused.get('detail', '')} ({', '.join(refused.get('reading_ids', [])[:3])})")
    forged = dict(messages[2])
    forged["readings"] = [dict(x) for x in forged["readings"]]
    forged["readings"][-1]["quantity"] = "0.01"  # someone trims the operating hours after signing
    forged["message_id"] = messages[2]["message_id"] + "-forged"
    r = client.post("/v1/usage", headers=h["device"], json=forged)
    refusals["forged"] = r.json().get("code", "")
    console.print(f"   Tampered message (hours cut to 0.01 after signing) → [red]{r.status_code} "
                  f"{r.json().get('code')}[/]: {r.json().get('detail', '')}")

    close_url = f"/v1/contracts/{CONTRACT_ID}/periods/{period}/close"
    invoice = _expect(client.post(close_url, headers=h["operator"]), 200)
    console.print(f"6. Operator closed {period} → invoice [bold]{invoice['id']}[/] {invoice['status']} "
                  f"(tx {invoice['tx_id'][:12]}…, block {invoice.get('block')})")
    _show_invoice(console, invoice)
    audit_ok = _audit_step(client, console, invoice["id"], h["auditor"])
    context = DemoContext(client, settings, console, contract, invoice,
                          {"period": period, "tx_ids": tx_ids, "messages": messages},
                          services=client.app.state.services)
    for step in extra_steps():
        step(context)
    total = Decimal(invoice["total"])
    tax = Decimal(invoice["tax"])
    endorsers = _endorsers(ledger, invoice["tx_id"])
    console.print(Panel.fit(
        f"Readings: {invoice['readings']} billed ({accepted} accepted, 1 duplicate and 1 forgery refused)\n"
        f"Ledger: {ledger.height()} blocks; {len(tx_ids)} usage transactions; "
        f"invoice tx {invoice['tx_id'][:16]}…, endorsed by {', '.join(endorsers) or 'n/a'}\n"
        f"Hospital owes [bold]${total:,}[/] for {period} (of which ${tax:,} sales tax), no capex\n"
        f"Provider books ${total:,} receivable (${total - tax:,} revenue, ${tax:,} tax to remit)\n"
        f"At this month's usage, buying the scanner outright (${PURCHASE_PRICE:,}) would take "
        f"{PURCHASE_PRICE / (total - tax):.0f} months of lease payments to match, before service and "
        "idle time",
        title="summary"))
    return DemoResult(invoice, len(messages), total_readings, len(tx_ids), ledger.height(), refusals,
                      replay_identical, audit_ok, endorsers)


def _ledger_name(settings: Settings) -> str:
    if settings.ledger == "fabric":
        return f"Fabric network {settings.fabric_network_dir}"
    return f"embedded ledger in {settings.data_dir}"


def _endorsers(ledger: Any, tx_id: str) -> list[str]:
    """Who endorsed a transaction, as `MSP id (certificate CN)`: the peers on Fabric, the org signers on
    the embedded ledger."""
    out = []
    for endorsement in ledger.tx(tx_id).endorsements:
        cert = x509.load_pem_x509_certificate(endorsement.certificate)
        names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        out.append(f"{endorsement.msp_id} ({names[0].value})" if names else endorsement.msp_id)
    return sorted(out)


def _audit_step(client: TestClient, console: Console, invoice_id: str,
                headers: dict[str, str]) -> bool | None:
    """The auditor downloads the proof bundle and checks it offline (None when the hub refuses the bundle)."""
    response = client.get(f"/v1/invoices/{invoice_id}/proof", headers=headers)
    if response.status_code != 200:
        console.print(f"7. Proof bundle unavailable: {response.status_code} {response.json().get('code')}")
        return None
    report = verify_bundle(response.json())
    checked = ", ".join(f"{n} {what}" for what, n in sorted(report.checked.items()))
    verdict = "[green]VERIFIED[/]" if report.ok else f"[red]FAILED[/] ({len(report.failures)} problems)"
    console.print(f"7. Auditor fetched the proof bundle ({len(response.content) // 1024} KiB) and checked it "
                  f"offline: {verdict}; {checked}")
    return report.ok


def _show_invoice(console: Console, invoice: dict[str, Any]) -> None:
    table = Table(title=f"Invoice {invoice['id']} ({invoice['currency']})")
    table.add_column("line")
    table.add_column("model")
    table.add_column("quantity", justify="right")
    table.add_column("amount", justify="right")
    for line in invoice["lines"]:
        table.add_row(line["charge_id"], line["model"], line["quantity"], f"{Decimal(line['amount']):,}")
    table.add_section()
    table.add_row("subtotal", "", "", f"{Decimal(invoice['subtotal']):,}")
    table.add_row(f"tax {invoice.get('tax_rate', '')}", "", "", f"{Decimal(invoice['tax']):,}")
    table.add_row("[bold]total[/]", "", "", f"[bold]{Decimal(invoice['total']):,}[/]")
    console.print(table)
