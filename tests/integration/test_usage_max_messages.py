"""Maximum-size usage messages sent concurrently on the embedded ledger, through a real hub process (ADR
0069): every message acknowledged, every reading on the ledger once, and the transactions capped by
readings (the embedded ledger has no size limit of its own; the caps apply on both ledgers). The Fabric
twin (where the orderer refused the uncapped transaction): tests/fabric/test_usage_max_messages_fabric.py."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_maximum_size_messages_on_the_embedded_ledger() -> None:
    from hub.bench import scenarios

    result = scenarios.ingest(messages_count=40, readings_per_message=1000, batch_max_messages=500,
                              concurrency=32, tag=f"maxmsg-{uuid.uuid4().hex[:8]}")
    assert result["messages"] == 40
    assert result["readings_sent"] == result["readings"] == result["ledger_readings"] == 40_000
    assert result["ledger_transactions"] >= 40_000 / 8000  # batch_max_readings' default
