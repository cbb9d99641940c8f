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
    # the plain PostgreSQL meter beside both ledgers, same traffic, same run (ADR 0040)
    plain = result["plaindb"]
    assert plain["readings_sent"] == plain["readings"] == plain["db_readings"] == expected["batched"]
    for ledger in ("embedded", "fabric"):
        assert result["vs_plaindb"][ledger] == pytest.approx(
            result["batched"][ledger]["readings_per_second"] / plain["readings_per_second"], rel=1e-2
        )
    assert any("plain PostgreSQL" in k for k in rows)
    # the hub ran Fabric with several transactions in flight (ADR 0039), the embedded ledger one at a time
    assert result["pipeline_depth"] == {"embedded": 1, "fabric": 2}


def test_peers_offer_write_batches_and_get_multiple_keys(fabric_network: FabricNetwork) -> None:
    """ADR 0033: network/core.yaml sets chaincode.runtimeParams, so each peer's READY offers write batching
    and GET_STATE_MULTIPLE, and the shim sends one message per batch of keys instead of one per key (the
    Fabric bench's first bottleneck). Without the block Fabric 3 offers neither."""
    import json
    import uuid

    from hub.config import Settings
    from hub.ledger.fabric import open_fabric_ledger
    from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset

    if not fabric_network.info["chaincode"].get("server_started_by_network"):
        pytest.skip("the network did not start the chaincode server (LEDGERHUB_FABRIC_NO_CHAINCODE=1)")
    tag = uuid.uuid4().hex[:8]
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    try:  # a transaction makes sure the peer has opened its stream to the chaincode (and sent READY)
        asset = json.dumps(sample_asset(make_device_key(tag), f"dev-{tag}"))
        assert ledger.submit("RegisterAsset", [asset], as_org=PROVIDER).valid
    finally:
        ledger.close()
    log = (fabric_network.layout.logs_dir / "chaincode.log").read_text()
    ready = [line for line in log.splitlines() if "peer READY:" in line]
    assert ready, "no READY logged by the chaincode server"
    assert all("write batch on (max 1000)" in line and "get multiple keys on (max 1000)" in line
               for line in ready), ready
