"""Smoke test of `ledgerhub bench --ledger fabric` (hub.bench.fabric) at its smallest size, on the session's
Fabric network, so the Fabric bench does not rot. It checks the report's shape and that every reading sent
was committed and is on each ledger; it asserts no speed (benchmarks are not tests)."""

from __future__ import annotations

import pytest

from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.timeout(600)]


def test_fabric_bench_reports_every_reading_committed_on_both_ledgers(fabric_network: FabricNetwork) -> None:
    from hub.bench import fabric

    result = fabric.compare("quick", network_json=fabric_network.network_json)

    sizes = fabric.SIZES["quick"]
    assert result["size"] == "quick" and result["network"]["brought_up"] is False
    expected = {
        "batched": sizes["messages"] // 4 * 4 * sizes["readings_per_message"],
        "one_per_tx": sizes["one_per_tx_messages"] // 4 * 4,
    }
    for mode, sent in expected.items():
        row = result[mode]
        for ledger in ("embedded", "fabric"):
            r = row[ledger]
            # what was sent, what the hub acknowledged as committed, what the ledger holds afterwards
            assert r["readings_sent"] == sent, (mode, ledger, r)
            assert r["readings"] == sent, (mode, ledger, r)
            assert r["ledger_readings"] == sent, (mode, ledger, r)
            assert r["p50_ms"] <= r["p95_ms"]
            assert r["readings_per_second"] > 0
        assert row["fabric_vs_embedded"] == pytest.approx(
            row["fabric"]["readings_per_second"] / row["embedded"]["readings_per_second"], rel=1e-2
        )
        # the CPU split names every node of the network (read from each node's process group)
        split = row["fabric"]["cpu_seconds"]
        assert {"orderer", "peer-provider", "peer-customer", "peer-auditor", "chaincode"} <= set(split)
        assert all(v >= 0 for v in split.values())
        assert "cpu_seconds" not in row["embedded"]
    # one reading per transaction means one ledger transaction per message on both ledgers
    for ledger in ("embedded", "fabric"):
        assert result["one_per_tx"][ledger]["ledger_transactions"] == expected["one_per_tx"]
    assert set(result["batched_vs_one_per_tx"]) == {"embedded", "fabric"}
    rows = dict(fabric.rows(result))
    assert any("Fabric ÷ embedded" in k for k in rows)
