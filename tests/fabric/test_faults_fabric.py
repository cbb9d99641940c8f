"""Fabric faults during ingestion: a device streams signed readings through the hub (real app, Fabric ledger)
while the test restarts a peer and then the orderer. Every reading the device got a 202 for must be on the
ledger exactly once, and nothing the device never sent appears.

Needs the Fabric binaries (the `fabric_network` fixture skips loudly without them; on the build machine the
Go module proxy refuses the Fabric modules, so this test has not run here, see docs/guarantees.md)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.config import Settings, TokenGrant
from network.admin import orderer_env, peer_node_env
from network.procs import healthz, start, stop, wait_until
from tests.helpers.api import TOKENS, auth, hub_client
from tests.helpers.chaincode import PROVIDER, make_device_key, sample_asset, sample_contract, signed_message
from tests.helpers.fabric_network import FabricNetwork

pytestmark = [pytest.mark.fabric, pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

MESSAGES = 60


def restart(network: FabricNetwork, name: str) -> None:
    """Stop one node (SIGTERM, then SIGKILL) and start it again with the same binary, env and directory."""
    layout = network.layout
    node = next(n for n in network.nodes if n.name == name)
    assert stop(node), f"{name} did not stop"
    if name == "orderer":
        new = start(
            name,
            [str(layout.binary("orderer"))],
            orderer_env(layout),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.orderer_dir,
        )
        port = layout.orderer_operations_port
    else:
        org = layout.org(name.removeprefix("peer-"))
        new = start(
            name,
            [str(layout.binary("peer")), "node", "start"],
            peer_node_env(layout, org),
            layout.pids_dir,
            layout.logs_dir,
            cwd=layout.peer_dir(org),
        )
        port = org.operations_port
    network.nodes[network.nodes.index(node)] = new
    wait_until(f"{name} /healthz", lambda: healthz(port), 120, [new])


def test_peer_and_orderer_restarts_lose_and_double_nothing(
    fabric_network: FabricNetwork, tmp_path: Path
) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    suffix = f"flt{int(time.time())}"
    device, contract_id = f"dev-{suffix}", f"ctr-{suffix}"
    key = make_device_key(suffix)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    settings = Settings(
        data_dir=tmp_path / "hub",
        scheduler_enabled=False,
        tokens={k: TokenGrant(**v) for k, v in TOKENS.items()},
    )
    acked: dict[str, list[str]] = {}
    sent: set[str] = set()
    stamps: list[str] = []
    errors: list[str] = []
    try:
        with hub_client(settings, ledger, background=False) as client:
            assert (
                client.post(
                    "/v1/assets", json=sample_asset(key, device), headers=auth("tok-provider")
                ).status_code
                == 201
            )
            contract = sample_contract(id=contract_id, assets=[device], start="2026-01-01")
            assert (
                client.post("/v1/contracts", json=contract, headers=auth("tok-provider")).status_code == 201
            )
            assert (
                client.post(f"/v1/contracts/{contract_id}/accept", headers=auth("tok-customer")).status_code
                == 200
            )

            def stream() -> None:
                for n in range(MESSAGES):
                    stamp = (
                        (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(microsecond=0).isoformat()
                    )
                    readings = [
                        {"id": f"{suffix}-{n}-{i}", "metric": "scan", "quantity": "1", "timestamp": stamp}
                        for i in range(2)
                    ]
                    message = signed_message(key, readings, device_id=device, message_id=f"{suffix}-{n}")
                    sent.update(r["id"] for r in readings)
                    stamps.append(stamp)
                    deadline = time.monotonic() + 240
                    while time.monotonic() < deadline:
                        r = client.post("/v1/usage", json=message, headers=auth("tok-device"))
                        if r.status_code == 202:
                            acked[message["message_id"]] = [x["id"] for x in readings]
                            break
                        if r.status_code < 500:
                            errors.append(f"{message['message_id']}: {r.status_code} {r.text[:200]}")
                            break
                        time.sleep(0.5)  # ledger unavailable / commit unknown: resend the same message
                    else:
                        errors.append(f"{message['message_id']}: no 202 in 240 s")

            device_thread = threading.Thread(target=stream, daemon=True)
            device_thread.start()
            time.sleep(3)
            restart(fabric_network, "peer-provider")
            time.sleep(3)
            restart(fabric_network, "orderer")
            device_thread.join(600)
            assert not device_thread.is_alive()
            assert not errors, errors
        tz = ZoneInfo(contract["timezone"])
        periods = {dt.datetime.fromisoformat(stamp).astimezone(tz).strftime("%Y-%m") for stamp in stamps}
        on_ledger: list[str] = []
        for period in sorted(periods):
            answer = json.loads(
                ledger.evaluate(
                    "GetReadings",
                    [json.dumps({"contract_id": contract_id, "period": period})],
                    as_org=PROVIDER,
                )
            )
            on_ledger += [r["id"] for r in answer["readings"]]
    finally:
        ledger.close()
    assert len(on_ledger) == len(set(on_ledger)), "a reading is on the ledger twice"
    acked_ids = {rid for ids in acked.values() for rid in ids}
    assert len(acked) == MESSAGES
    assert acked_ids <= set(on_ledger) <= sent
