"""Maximum-size usage messages sent concurrently on a real Fabric network (ADR 0069).

40 messages of 1,000 readings (`max_readings_per_message`) from 4 devices over 32 clients used to be
drained into one transaction of ≈ 12 MB, which the orderer refuses outright (over the channel's
AbsoluteMaxBytes, 10 MB); the hub retried the same transaction and answered `503 ledger_conflict`. Every
message must be acknowledged and every reading be on the ledger exactly once: with the hub's caps on a
transaction's readings and bytes, and with those caps lifted (the hub then splits what the orderer
refuses). `scenarios.ingest` raises on any answer but 202, and reads the contract's reading count back
from the ledger afterwards; no speed is asserted."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.timeout(900)]

MESSAGES = 40
READINGS = 1000  # hub/config.py max_readings_per_message: the largest message the API accepts


def _send(fabric_network: FabricNetwork, **settings: object) -> dict[str, object]:
    from hub.bench import scenarios
    from hub.config import Settings

    assert Settings().max_readings_per_message == READINGS
    return scenarios.ingest(
        messages_count=MESSAGES, readings_per_message=READINGS, batch_max_messages=500, concurrency=32,
        tag=f"maxmsg-{uuid.uuid4().hex[:8]}",
        hub_settings={"ledger": "fabric", "fabric_network_dir": fabric_network.network_json, **settings},
    )


def _assert_all_committed_once(result: dict[str, object]) -> None:
    sent = MESSAGES * READINGS
    assert result["messages"] == MESSAGES
    assert result["readings_sent"] == sent
    assert result["readings"] == sent  # every reading acknowledged as accepted (none a duplicate)
    assert result["ledger_readings"] == sent  # and the contract holds each one, once


def test_maximum_size_messages_sent_concurrently_all_commit(fabric_network: FabricNetwork) -> None:
    result = _send(fabric_network)
    _assert_all_committed_once(result)
    # the batches were capped (8,000 readings per transaction by default), not one transaction of 40,000
    assert result["ledger_transactions"] >= MESSAGES * READINGS / 8000


def test_a_transaction_the_orderer_refuses_for_size_is_split(fabric_network: FabricNetwork) -> None:
    """Caps lifted far above the orderer's limit: the orderer refuses the big transaction and the hub
    halves it until each part fits, instead of answering ledger_conflict."""
    result = _send(fabric_network, batch_max_readings=1_000_000, batch_max_bytes=10**9)
    _assert_all_committed_once(result)
