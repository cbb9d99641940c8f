"""`ledgerhub bench` / `make bench`: figures measured in one run on this machine, printed, stored as JSON and
drawn as a chart so runs can be compared. Benchmarks are not tests: nothing here asserts a speed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hub.bench import fabric, plaindb, report, scenarios

app = typer.Typer(
    help="Benchmarks: ingestion, period close, delivery, signing, verification.",
    invoke_without_command=True,
    no_args_is_help=False,
)
console = Console()

FULL = {
    "ingest_messages": 2000,
    "readings_per_message": 100,
    "one_per_tx_messages": 600,
    "close_sizes": (1_000, 100_000, 1_000_000),
    "delivery_invoices": 200,
    "sign_count": 5000,
    "verify_seconds": 2.0,
    "contract_readings": 50_000,
}
# what the optimisation steps of docs/performance.md were measured with (a full run took 17 minutes on the
# shared box): the same shapes, fewer messages, no million-reading close
MID = {
    "ingest_messages": 400,
    "readings_per_message": 100,
    "one_per_tx_messages": 200,
    "close_sizes": (1_000, 100_000),
    "delivery_invoices": 50,
    "sign_count": 1000,
    "verify_seconds": 1.0,
    "contract_readings": 20_000,
}
QUICK = {
    "ingest_messages": 40,
    "readings_per_message": 10,
    "one_per_tx_messages": 20,
    "close_sizes": (100, 1_000),
    "delivery_invoices": 5,
    "sign_count": 200,
    "verify_seconds": 0.2,
    "contract_readings": 1_000,
}


def run(
    quick: bool = False,
    out_dir: Path = Path("bench-results"),
    profile: Path | None = None,
    mid: bool = False,
    ledger: str = "embedded",
    fabric_network: Path | None = None,
) -> dict[str, Any]:
    """Every scenario once. `profile`: a directory for py-spy flame graphs of the hub process during the
    two ingestion runs (the profile hook; sampling slows the hub a little, so figures from a profiled run
    are not the ones to quote) and of the chaincode server during the Fabric batched run.

    `ledger`: "embedded" (the default here; the CLI's default is "auto") runs the embedded suite only;
    "fabric" only the Fabric comparison (embedded and Fabric ingestion at the same sizes, one run; see
    hub.bench.fabric); "auto" the embedded suite and, when the Fabric binaries are built, the Fabric
    comparison too. `fabric_network`: network.json of a running network to use instead of bringing one
    up."""
    size = "quick" if quick else "mid" if mid else "full"
    results: dict[str, Any] = {
        "quick": quick, "mid": mid and not quick, "started_at": dt.datetime.now(dt.UTC).isoformat()
    }
    if ledger != "fabric":
        _embedded_suite(results, QUICK if quick else MID if mid else FULL, profile)
    if ledger in ("fabric", "auto"):
        reason = None if fabric_network else fabric.available()
        if reason is None:
            results["fabric"] = fabric.compare(
                size, network_json=fabric_network, profile=profile, status=console.status
            )
        elif ledger == "fabric":
            raise typer.BadParameter(reason, param_hint="--ledger fabric")
        else:
            results["fabric_skipped"] = reason
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results["json"] = str(report.write_json(results, out_dir, stamp))
    if "ingest" in results:
        results["chart"] = str(report.write_chart(results, out_dir, stamp))
    if "plaindb" in results.get("fabric", {}):
        results["ledgers_chart"] = str(report.write_ledgers_chart(results["fabric"], out_dir, stamp))
    show(results)
    return results


def _embedded_suite(results: dict[str, Any], sizes: dict[str, Any], profile: Path | None) -> None:
    with console.status("raw P-256 verifications"):
        results["p256_verify_per_second"] = round(
            scenarios.p256_verifications_per_second(sizes["verify_seconds"])
        )
    with console.status("signing: software and PKCS#11 (SoftHSM2)"):
        results["signing"] = scenarios.signing_rates(sizes["sign_count"])
    with console.status("the contract alone (RecordUsage on the in-memory stub, CPU time)"):
        results["contract"] = scenarios.contract_cpu(sizes["contract_readings"])
    with console.status("ingestion, batched"):
        batched = scenarios.ingest(
            messages_count=sizes["ingest_messages"],
            readings_per_message=sizes["readings_per_message"],
            batch_max_messages=500,
            concurrency=32,
            profile=profile / "hub-batched.svg" if profile else None,
        )
    with console.status("ingestion, one reading per ledger transaction"):
        single = scenarios.ingest(
            messages_count=sizes["one_per_tx_messages"],
            readings_per_message=1,
            batch_max_messages=1,
            concurrency=32,
            profile=profile / "hub-one-per-tx.svg" if profile else None,
        )
    results["ingest"] = {
        "batched": batched,
        "one_per_tx": single,
        "ratio": round(batched["readings_per_second"] / single["readings_per_second"], 1),
    }
    reason = plaindb.unavailable()
    if reason is None:
        with console.status("ingestion batched into a plain PostgreSQL table (the meter beside the ledger)"):
            plain = plaindb.measure(
                messages_count=sizes["ingest_messages"],
                readings_per_message=sizes["readings_per_message"],
                concurrency=32,
            )
        results["plaindb"] = plain
        rate = batched["readings_per_second"] / plain["readings_per_second"]
        results["ingest"]["vs_plaindb"] = round(rate, 3)
    else:
        results["plaindb_skipped"] = reason
    results["close"] = []
    for size in sizes["close_sizes"]:
        with console.status(f"period close with {size:,} readings (loading)"):
            results["close"].append(scenarios.period_close(size))
    with console.status("delivery with 50 ms ERP latency"):
        results["delivery"] = scenarios.delivery(sizes["delivery_invoices"])


def show(results: dict[str, Any]) -> None:
    table = Table(title="LedgerHub benchmark (this machine, this run)")
    table.add_column("measure")
    table.add_column("figure", justify="right")
    if "ingest" in results:
        _embedded_rows(table, results)
    if "fabric" in results:
        f = results["fabric"]
        table.add_section()
        for measure, figure in fabric.rows(f):
            table.add_row(measure, figure)
    elif "fabric_skipped" in results:
        table.add_row("Fabric", f"skipped: {results['fabric_skipped'][:120]}")
    console.print(table)
    chart = "".join(f"   chart: {results[k]}" for k in ("chart", "ledgers_chart") if k in results)
    console.print(f"JSON: {results['json']}{chart}")


def _embedded_rows(table: Table, results: dict[str, Any]) -> None:
    ingest = results["ingest"]
    for name, row in (("batched", ingest["batched"]), ("1 reading / tx", ingest["one_per_tx"])):
        table.add_row(f"ingest {name}: committed readings/s", f"{row['readings_per_second']:,.0f}")
        if row.get("readings_per_hub_cpu_second"):
            table.add_row(
                f"ingest {name}: readings per hub CPU-second",
                f"{row['readings_per_hub_cpu_second']:,.0f} ({row['hub_cpu_seconds']} CPU-s)",
            )
        table.add_row(f"ingest {name}: p50 / p95 request→commit", f"{row['p50_ms']} / {row['p95_ms']} ms")
    table.add_row("batched ÷ one-per-transaction", f"{ingest['ratio']}×")
    if "plaindb" in results:
        p = results["plaindb"]
        table.add_row(
            "plain PostgreSQL table, batched: committed readings/s (p50 / p95)",
            f"{p['readings_per_second']:,.0f} ({p['p50_ms']} / {p['p95_ms']} ms)",
        )
        table.add_row("embedded ledger ÷ plain PostgreSQL, batched (same run)", f"{ingest['vs_plaindb']}×")
    elif "plaindb_skipped" in results:
        table.add_row("plain PostgreSQL table", f"skipped: {results['plaindb_skipped'][:120]}")
    if "contract" in results:
        c = results["contract"]
        table.add_row(
            "contract alone: new / duplicate readings per CPU-second",
            f"{c['new_readings_per_cpu_second']:,} / {c['duplicate_readings_per_cpu_second']:,}",
        )
    for close in results["close"]:
        table.add_row(
            f"period close, {close['readings']:,} readings ({close['batches']} batches)",
            f"{close['seconds']:.3f} s",
        )
    d = results["delivery"]
    table.add_row(
        f"invoices delivered/s (both ERPs, {d['erp_latency_ms']} ms latency)",
        f"{d['invoices_per_second']:.1f}",
    )
    for name, rate in results["signing"].items():
        if isinstance(rate, int | float):
            table.add_row(f"signatures/s: {name}", f"{rate:,.0f}")
    table.add_row("raw P-256 verifications/s (one core)", f"{results['p256_verify_per_second']:,}")


@app.callback()
def main(
    ctx: typer.Context,
    quick: bool = typer.Option(False, help="small sizes: a smoke run, not figures to quote"),
    mid: bool = typer.Option(False, help="intermediate sizes (400 x 100 readings, closes up to 100 000)"),
    out: Path = typer.Option(Path("bench-results"), help="where the JSON and chart go"),
    profile: Path | None = typer.Option(
        None, help="directory for py-spy flame graphs of the hub during ingestion (needs py-spy)"
    ),
    ledger: str = typer.Option(
        "auto",
        help="embedded: the embedded suite only; fabric: embedded vs a real Fabric network, same sizes, "
        "one run; auto: both when the Fabric binaries are built",
    ),
    fabric_network: Path | None = typer.Option(
        None, help="network.json of a running Fabric network to use (default: bring one up and down)"
    ),
) -> None:
    if ledger not in ("auto", "embedded", "fabric"):
        raise typer.BadParameter("auto, embedded or fabric", param_hint="--ledger")
    if ctx.invoked_subcommand is None:
        run(quick, out, profile, mid, ledger, fabric_network)
