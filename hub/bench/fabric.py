"""Ingestion on a real Fabric network beside the embedded ledger, in the same run (`ledgerhub bench
--ledger fabric`; part of `make bench` when the Fabric binaries are built).

The same hub (`ledgerhub serve` in its own process) and the same signed traffic drive both ledgers at the
same sizes, one run after the other: embedded batched, Fabric batched, embedded one reading per
transaction, Fabric one reading per transaction. The ratios printed are between figures of this one run.
During each Fabric run the CPU seconds (utime + stime from /proc) of every node's process group are read
before and after the load: peers, orderer, the chaincode server (`python -m chaincode`), plus the hub and
the load generator, so the report says where the CPU went. Nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.bench import plaindb, scenarios

# batched: 100 readings per message from 32 clients, as the embedded figures of docs/performance.md; one
# reading per transaction is slow on Fabric (one block per transaction), so fewer messages
SIZES = {
    "full": {"messages": 400, "readings_per_message": 100, "one_per_tx_messages": 200},
    "mid": {"messages": 200, "readings_per_message": 100, "one_per_tx_messages": 100},
    "quick": {"messages": 16, "readings_per_message": 10, "one_per_tx_messages": 8},
}
CONCURRENCY = 32


def available() -> str | None:
    """None when the Fabric binaries are built here, else why the Fabric rows are skipped."""
    from network.admin import unavailable_reason

    return unavailable_reason()


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime (seconds) summed over the live processes of process group `pgid` (a node started by
    network/procs.start leads its own group; children it spawned count too)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        if int(rest[2]) == pgid:
            total += int(rest[11]) + int(rest[12])
    return total / tick


def node_groups(run_dir: Path) -> dict[str, int]:
    """Node name → process group id, from the network's pid files (peer-provider, orderer, chaincode…)."""
    from network.procs import recorded

    return {n.name: n.pid for n in recorded(run_dir / "pids") if n.is_alive()}


@contextlib.contextmanager
def network(existing: Path | None, work_dir: Path) -> Iterator[Path]:
    """network.json of a running Fabric network: `existing` as is, or a fresh one on free ports in
    `work_dir` for the duration (brought down afterwards, as `ledgerhub demo --ledger fabric` does)."""
    if existing is not None:
        yield existing
        return
    from network import manage
    from network.procs import free_port_base

    run_dir = work_dir / "fabric"
    manage.up(run_dir=run_dir, port_base=free_port_base(), start_chaincode=True)
    try:
        yield run_dir / "network.json"
    finally:
        manage.down(run_dir)


def compare(
    size: str = "full",
    *,
    network_json: Path | None = None,
    work_dir: Path | None = None,
    profile: Path | None = None,
    status: Any = None,
) -> dict[str, Any]:
    """Embedded vs Fabric ingestion over HTTP, batched and one reading per transaction, same sizes, one run.
    `profile`: a directory for a py-spy profile of the chaincode server during the Fabric batched run."""
    sizes = SIZES[size]
    say = status or (lambda _msg: contextlib.nullcontext())
    started = time.perf_counter()
    out: dict[str, Any] = {"size": size, "sizes": sizes, "concurrency": CONCURRENCY}
    with contextlib.ExitStack() as stack:
        tmp = work_dir or Path(stack.enter_context(_tempdir()))
        with say("Fabric: bringing up a network (orderer, 3 peers, chaincode server)"):
            net_json = stack.enter_context(network(network_json, tmp))
        run_dir = net_json.parent
        groups = node_groups(run_dir)
        out["network"] = {
            "run_dir": str(run_dir), "nodes": sorted(groups), "brought_up": network_json is None
        }

        def probe() -> dict[str, float]:
            return {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}

        fabric_settings = {"ledger": "fabric", "fabric_network_dir": str(net_json)}
        run = uuid.uuid4().hex[:6]
        out["pipeline_depth"] = {"embedded": _depth("embedded"), "fabric": _depth("fabric")}
        for mode, per_message, count, max_messages in (
            ("batched", sizes["readings_per_message"], sizes["messages"], 500),
            ("one_per_tx", 1, sizes["one_per_tx_messages"], 1),
        ):
            row: dict[str, Any] = {}
            for ledger in ("embedded", "fabric"):
                on_fabric = ledger == "fabric"
                with say(f"ingestion {mode} on the {ledger} ledger"):
                    row[ledger] = scenarios.ingest(
                        messages_count=count,
                        readings_per_message=per_message,
                        batch_max_messages=max_messages,
                        concurrency=CONCURRENCY,
                        hub_settings=fabric_settings if on_fabric else None,
                        tag=f"fb{run}{ledger[0]}{mode[0]}",
                        cpu_probe=probe if on_fabric else None,
                        profile=profile / f"chaincode-{mode}.svg" if profile and on_fabric else None,
                        profile_pid=groups.get("chaincode") if on_fabric else None,
                    )
            row["fabric_vs_embedded"] = _ratio(row["fabric"], row["embedded"])
            out[mode] = row
            if mode == "batched":  # the same signed traffic into a plain PostgreSQL table (ADR 0040)
                reason = plaindb.unavailable()
                if reason is None:
                    with say("ingestion batched into a plain PostgreSQL table (the meter beside the ledger)"):
                        out["plaindb"] = plaindb.measure(
                            messages_count=count, readings_per_message=per_message, concurrency=CONCURRENCY,
                            tag=f"pl{run}",
                        )
                    out["vs_plaindb"] = {
                        ledger: _ratio(row[ledger], out["plaindb"]) for ledger in ("embedded", "fabric")
                    }
                else:
                    out["plaindb_skipped"] = reason
    out["batched_vs_one_per_tx"] = {
        ledger: _ratio(out["batched"][ledger], out["one_per_tx"][ledger]) for ledger in ("embedded", "fabric")
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _depth(ledger: str) -> int:
    from hub.api.app import pipeline_depth
    from hub.config import Settings

    return pipeline_depth(Settings(ledger=ledger))  # what the hub runs with (LEDGERHUB_* settings apply)


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    rate = b["readings_per_second"]
    return round(a["readings_per_second"] / rate, 3) if rate else None


@contextlib.contextmanager
def _tempdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ledgerhub-bench-fabric-") as tmp:
        yield tmp


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The Fabric comparison as (measure, figure) rows for the printed table."""
    out: list[tuple[str, str]] = []
    if "plaindb" in result:
        p = result["plaindb"]
        out.append((
            "plain PostgreSQL table, batched: committed readings/s (p50 / p95 request→commit)",
            f"{p['readings_per_second']:,.1f} ({p['p50_ms']:,.0f} / {p['p95_ms']:,.0f} ms)",
        ))
        for ledger, ratio in result["vs_plaindb"].items():
            out.append((f"{ledger} ÷ plain PostgreSQL, batched (same run)", f"{ratio}×"))
    elif "plaindb_skipped" in result:
        out.append(("plain PostgreSQL table", f"skipped: {result['plaindb_skipped'][:120]}"))
    for mode, label in (("batched", "batched"), ("one_per_tx", "1 reading / tx")):
        row = result[mode]
        for ledger in ("embedded", "fabric"):
            r = row[ledger]
            out.append((
                f"{ledger}, {label}: committed readings/s (p50 / p95 request→commit)",
                f"{r['readings_per_second']:,.1f} ({r['p50_ms']:,.0f} / {r['p95_ms']:,.0f} ms)",
            ))
        out.append((f"{label}: Fabric ÷ embedded (same run)", f"{row['fabric_vs_embedded']}×"))
    for ledger, ratio in result["batched_vs_one_per_tx"].items():
        out.append((f"{ledger}: batched ÷ one per transaction (same run)", f"{ratio}×"))
    for mode in ("batched", "one_per_tx"):
        r = result[mode]["fabric"]
        split = {
            **r.get("cpu_seconds", {}), "hub": r["hub_cpu_seconds"], "load generator": r["client_cpu_seconds"]
        }
        text = ", ".join(f"{k} {v:.1f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1]))
        label = f"fabric, {mode}: CPU-s during {r['readings']:,} readings in {r['seconds']:.1f} s"
        out.append((label, text))
    return out
