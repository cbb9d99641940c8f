"""A small run of the benchmark harness so it cannot rot. It asserts the shape of what a run produces and
that each measured quantity is real (positive counts that add up), never a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.bench import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_run_writes_figures_json_and_chart(tmp_path: Path) -> None:
    results = run(quick=True, out_dir=tmp_path)
    stored = json.loads(Path(results["json"]).read_text())
    assert Path(results["chart"]).stat().st_size > 10_000  # a real PNG, not an empty file
    batched, single = stored["ingest"]["batched"], stored["ingest"]["one_per_tx"]
    assert batched["readings"] == 40 * 10 and single["readings"] == 20
    # what was sent is what the ledger holds afterwards (asked through the API after the load)
    assert batched["readings_sent"] == batched["ledger_readings"] == 40 * 10
    assert single["readings_sent"] == single["ledger_readings"] == 20
    assert "fabric" not in stored  # the Python API runs the embedded suite unless asked
    # one reading per transaction really means one transaction per message
    assert single["ledger_transactions"] == single["messages"]
    assert 1 <= batched["ledger_transactions"] <= batched["messages"]  # batching never adds transactions
    assert stored["ingest"]["ratio"] > 0
    assert [c["readings"] for c in stored["close"]] == [100, 1000]
    assert stored["delivery"]["deliveries"] == 2 * stored["delivery"]["invoices"]
    assert stored["p256_verify_per_second"] > 0 and stored["signing"]["software_raw"] > 0
    # the CPU-time figures (ADR 0024): the hub really spent CPU on the load, the contract ran every reading
    assert batched["hub_cpu_seconds"] > 0 and batched["readings_per_hub_cpu_second"] > 0
    assert stored["contract"]["readings"] == 1000
    assert stored["contract"]["new_readings_per_cpu_second"] > 0
    assert all(c["cpu_seconds"] >= 0 for c in stored["close"])
    # the plain-database meter (ADR 0040): the same traffic, every reading in its table once
    plain = stored["plaindb"]
    assert plain["readings_sent"] == plain["readings"] == plain["db_readings"] == 40 * 10
    assert plain["service_cpu_seconds"] > 0 and plain["settings"]["durable"] is True
    assert stored["ingest"]["vs_plaindb"] == pytest.approx(
        batched["readings_per_second"] / plain["readings_per_second"], rel=1e-2
    )
