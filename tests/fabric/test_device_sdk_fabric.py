"""The device SDK on a real Fabric network, through the hub's HTTP API: with the orderer killed the hub
answers 503 with Retry-After and the SDK waits exactly that long before sending the same message again
(the orderer is restarted during that wait); the readings land once, a reading the contract does not know
is reported as refused with its code, and the ledger holds exactly the delivered readings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hub.config import Settings
from ledgerhub.device import DeviceClient, PemSigner
from tests.helpers.api import TOKENS, auth, hub_client, last_month
from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset, sample_contract
from tests.helpers.fabric_faults import NodeKiller
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]


def test_sdk_sends_through_fabric_and_rides_out_an_orderer_outage(fabric_network: FabricNetwork,
                                                                   tmp_path: Path) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    killer = NodeKiller(fabric_network)
    suffix = f"sdk{os.getpid()}{int(time.time()) % 100000}"
    key = make_device_key(suffix)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    settings = Settings(data_dir=tmp_path / "hub", tokens=TOKENS, ingest_retry_after_seconds=2)
    period, start = last_month()
    device_id, contract_id = f"dev-{suffix}", f"ctr-{suffix}"
    waits: list[float] = []
    spec: list[Any] = []

    def sleep(seconds: float) -> None:  # the SDK's wait: bring the orderer back meanwhile
        waits.append(seconds)
        if spec:
            killer.restart(spec.pop())
        time.sleep(min(seconds, 2.0))

    try:
        with hub_client(settings, ledger, background=False) as client:
            assert client.post("/v1/assets", json=sample_asset(key, device_id),
                               headers=auth("tok-provider")).status_code == 201
            contract = sample_contract(id=contract_id, assets=[device_id], start=start)
            proposed = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
            assert proposed.status_code == 201, proposed.text
            accepted = client.post(f"/v1/contracts/{contract_id}/accept", headers=auth("tok-customer"))
            assert accepted.status_code == 200, accepted.text
            device = DeviceClient(None, device_id=device_id, token="tok-device",
                                  signer=PemSigner(key.private_key), queue_path=tmp_path / "queue.sqlite",
                                  http=client, batch_size=10, sleep=sleep)
            for i in range(25):
                device.add(f"{suffix}-{i}", metric="scan", quantity="1",
                           timestamp=f"{period}-{1 + i % 27:02d}T10:00:00+01:00")
            device.add(f"{suffix}-bad", metric="no_such_metric", quantity="1",
                       timestamp=f"{period}-05T10:00:00+01:00")
            spec.append(killer.kill("orderer"))
            report = device.flush()
            print(f"\nSDK on Fabric: {report}; waits {waits}")
            assert waits[0] == 2.0  # the hub's Retry-After, not the SDK's own backoff
            assert report.pending == 0 and report.delivered == 25 and report.refused == 1
            assert [(r.id, r.code) for r in device.refusals()] == [(f"{suffix}-bad", "unknown_metric")]
            messages = device.queue.messages()
            assert messages[0]["attempts"] >= 2  # the first message, resent under its own id
            device.close()
        on_ledger = json.loads(ledger.evaluate("GetReadings", [json.dumps(
            {"contract_id": contract_id, "period": period})], as_org=PROVIDER))["readings"]
    finally:
        if spec:
            killer.restart(spec.pop())
        ledger.close()
    ids = [r["id"] for r in on_ledger]
    assert sorted(ids) == sorted(f"{suffix}-{i}" for i in range(25))  # each once, the refused one absent
