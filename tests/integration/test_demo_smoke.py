"""`ledgerhub demo` end to end (embedded ledger, real contract, HTTP API): the invoice it shows is the one
the plan gives for the readings it sent, recomputed here independently."""

from __future__ import annotations

import datetime as dt
import io
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from hub import demo
from hub.demo import month_of_readings, previous_month, run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def expected_invoice(now: dt.datetime) -> tuple[int, Decimal, Decimal]:
    tz = ZoneInfo("America/New_York")
    _, first, days = previous_month(now, tz)
    readings = [r for message in month_of_readings(first, days, tz) for r in message]
    scans = sum(Decimal(r["quantity"]) for r in readings if r["metric"] == "scan")
    hours = sum(Decimal(r["quantity"]) for r in readings if r["metric"] == "operating_hours")
    tiers = [(Decimal(150), Decimal("28.00")), (Decimal(150), Decimal("22.00")), (None, Decimal("16.00"))]
    left, scan_amount = scans, Decimal(0)
    for size, price in tiers:
        take = left if size is None else min(left, size)
        scan_amount += take * price
        left -= take
    hours_amount = (hours * Decimal("85.00")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    subtotal = max(Decimal("750.00") + scan_amount + hours_amount, Decimal("9000.00"))
    tax = (subtotal * Decimal("0.0625")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return len(readings), subtotal, (subtotal + tax).quantize(Decimal("0.01"))


def test_demo_runs_end_to_end(tmp_path):
    out = io.StringIO()
    now = dt.datetime.now(dt.UTC)
    seen: list[tuple[str, int]] = []

    def step(context: demo.DemoContext) -> None:  # what the delivery area's "invoice in SAP" step gets
        invoice_id = context.invoice["id"]
        got = context.client.get(f"/v1/invoices/{invoice_id}", headers=context.headers("customer"))
        seen.append((got.json()["id"], context.services.ledger.height()))

    demo.register_step(step)
    try:
        result = run_demo(tmp_path / "demo", Console(file=out, width=120, force_terminal=False), now=now)
    finally:
        demo._STEPS.remove(step)
    assert seen == [(result.invoice["id"], seen[0][1])] and seen[0][1] >= result.transactions
    count, subtotal, total = expected_invoice(now)
    invoice = result.invoice
    assert invoice["status"] == "ISSUED"
    assert invoice["readings"] == count == result.readings
    assert Decimal(invoice["subtotal"]) == subtotal
    assert Decimal(invoice["total"]) == total
    assert result.refusals == {"duplicate": "duplicate_reading", "forged": "bad_signature"}
    assert result.replay_identical
    assert 1 <= result.transactions <= result.messages
    assert result.audit_verified is True  # the auditor's offline check of the proof bundle
    printed = out.getvalue()
    assert f"{total:,}" in printed
    assert "duplicate_reading" in printed and "bad_signature" in printed
    assert invoice["id"] in printed
    # the last act: delivered once to SAP (receivable) and Oracle (payable), paid, settled on the ledger
    assert "Delivered exactly once: SAP journal entry" in printed and "SETTLED" in printed


def test_ledgerhub_demo_command_prints_no_traceback_or_warning(tmp_path):
    # what `make demo` shows a customer: the command as a user runs it, stderr included, where the hub's
    # log lines land; a warning or traceback there is a defect even when the story itself completes
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("ledgerhub")
    run = subprocess.run(
        [str(exe), "demo", "--data-dir", str(tmp_path / "demo")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SETTLED" in run.stdout and "Traceback" not in run.stdout
    assert run.stderr == ""
