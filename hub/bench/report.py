"""Benchmark output: a table for people, JSON for comparing runs, and a chart."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def write_json(results: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        **results,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
    }
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "latest.json").write_text(path.read_text())
    return path


def write_chart(results: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4))
    ingest = results.get("ingest", {})
    labels = [k for k in ("batched", "one_per_tx") if k in ingest]
    rates = [ingest[k]["readings_per_second"] for k in labels]
    axes[0].bar(
        ["batched", "1 reading / tx"][: len(labels)], rates, color=["#0b5fad", "#9aa7b4"][: len(labels)]
    )
    axes[0].set_title(f"Committed readings/s (embedded), ratio {ingest.get('ratio', 0):.0f}×")
    axes[0].set_ylabel("readings per second")
    close = results.get("close", [])
    if close:
        axes[1].plot([c["readings"] for c in close], [c["seconds"] for c in close], "o-", color="#0b5fad")
        axes[1].set_xscale("log")
        axes[1].set_title("Period close time")
        axes[1].set_xlabel("readings in the period")
        axes[1].set_ylabel("seconds")
        axes[1].set_ylim(bottom=0)  # from zero: a 5 ms spread must not look like a steep growth
    other = {
        k: v
        for k, v in (
            ("P-256 verify/s", results.get("p256_verify_per_second")),
            ("software sign/s", results.get("signing", {}).get("software_raw")),
            ("HSM sign/s", results.get("signing", {}).get("pkcs11_raw")),
            ("invoices/s (50 ms ERP)", results.get("delivery", {}).get("invoices_per_second")),
        )
        if v
    }
    axes[2].barh(list(other), list(other.values()), color="#0b5fad")
    axes[2].set_xscale("log")
    axes[2].set_title("Reference rates (log scale)")
    # CPU cost per reading: what the hub and the contract spend, whatever else the machine is doing
    cpu = {
        k: v
        for k, v in (
            ("contract\nalone", results.get("contract", {}).get("new_readings_per_cpu_second")),
            ("hub\nbatched", ingest.get("batched", {}).get("readings_per_hub_cpu_second")),
            ("hub\n1 reading / tx", ingest.get("one_per_tx", {}).get("readings_per_hub_cpu_second")),
        )
        if v
    }
    axes[3].bar(list(cpu), list(cpu.values()), color=["#2a9d8f", "#0b5fad", "#9aa7b4"][: len(cpu)])
    axes[3].set_title("Readings per CPU-second (log scale)")
    axes[3].set_ylabel("readings per CPU-second")
    axes[3].set_yscale("log")
    fig.tight_layout()
    path = out_dir / f"bench-{stamp}.png"
    fig.savefig(path, dpi=110)
    fig.savefig(out_dir / "latest.png", dpi=110)
    plt.close(fig)
    return path


def write_ledgers_chart(fabric: dict[str, Any], out_dir: Path, stamp: str) -> Path:
    """The three stores of one `ledgerhub bench --ledger fabric` run side by side: committed readings/s
    batched (plain PostgreSQL table, embedded ledger, Fabric) with each ledger's ratio to the table, and
    where the CPU went on Fabric (ADR 0040)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batched = fabric["batched"]
    names = ["plain PostgreSQL\ntable", "LedgerHub\nembedded", "LedgerHub\nFabric"]
    rows = [fabric["plaindb"], batched["embedded"], batched["fabric"]]
    rates = [r["readings_per_second"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    bars = axes[0].bar(names, rates, color=["#9aa7b4", "#0b5fad", "#2a9d8f"])
    base = rates[0] or 1
    for bar, rate, row in zip(bars, rates, rows, strict=True):
        label = f"{rate:,.0f}/s\n{rate / base:.2f}× · p50 {row['p50_ms'] / 1000:.2f} s"
        axes[0].annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                         va="bottom", fontsize=9)
    axes[0].set_ylim(0, max(rates) * 1.3)
    n = batched["fabric"]["readings"]
    axes[0].set_title(f"Committed readings/s, same signed traffic, one run ({n:,} readings, 32 clients)")
    axes[0].set_ylabel("readings per second")
    r = batched["fabric"]
    split = {**r.get("cpu_seconds", {}), "hub": r["hub_cpu_seconds"],
             "load generator": r["client_cpu_seconds"]}
    order = sorted(split, key=lambda k: -split[k])
    axes[1].barh(order[::-1], [split[k] for k in order[::-1]], color="#2a9d8f")
    axes[1].set_title(f"Fabric batched: CPU-seconds per process group ({r['seconds']:.1f} s wall)")
    axes[1].set_xlabel("CPU-seconds during the load")
    fig.tight_layout()
    path = out_dir / f"bench-ledgers-{stamp}.png"
    fig.savefig(path, dpi=110)
    fig.savefig(out_dir / "latest-ledgers.png", dpi=110)
    plt.close(fig)
    return path
