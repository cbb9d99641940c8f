"""Lifecycle webhooks on a real Fabric network: the events come from the channel's event stream through the
Gateway, reach the subscribed org's receiver signed and once each, and a replay of the stream from block 0
sends nothing again."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.config import Settings
from hub.delivery.lifecycle import LifecycleEventRow
from hub.portal.alerts import verify_webhook
from hub.store.models import EventCheckpoint
from tests.helpers.api import TOKENS, auth, hub_client, last_month
from tests.helpers.chaincode import make_device_key, reading, sample_asset, sample_contract, signed_message
from tests.helpers.fabric_network import FabricNetwork
from tests.helpers.webhooks import LOCAL_RECEIVERS, Receiver

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.timeout(900)]
SECRET = "fabric-hook-secret-0123456789"


def seen(services: Any, contract_id: str) -> int:
    with services.db() as session:
        return len(session.scalars(select(LifecycleEventRow).where(
            LifecycleEventRow.contract_id == contract_id)).all())


def test_lifecycle_events_from_fabric_reach_the_receiver_once(fabric_network: FabricNetwork,
                                                             tmp_path: Path) -> None:
    from hub.ledger.fabric import open_fabric_ledger

    suffix = f"life{os.getpid()}{int(time.time()) % 100000}"
    key = make_device_key(suffix)
    ledger = open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=fabric_network.network_json))
    settings = Settings(data_dir=tmp_path / "hub", tokens=TOKENS, **LOCAL_RECEIVERS)
    period, start = last_month()
    device_id, contract_id = f"dev-{suffix}", f"ctr-{suffix}"
    receiver = Receiver()
    try:
        with hub_client(settings, ledger, background=False, scheduler=False, areas=("delivery",)) as client:
            r = client.post("/v1/webhooks", headers=auth("tok-customer"), json={"url": receiver.url,
                            "secret": SECRET, "events": ["contract.activated", "invoice.issued",
                                                         "invoice.disputed"]})
            assert r.status_code == 201, r.text
            assert client.post("/v1/assets", json=sample_asset(key, device_id),
                               headers=auth("tok-provider")).status_code == 201
            contract = sample_contract(id=contract_id, assets=[device_id], start=start)
            proposed = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
            assert proposed.status_code == 201, proposed.text
            assert client.post(f"/v1/contracts/{contract_id}/accept",
                               headers=auth("tok-customer")).status_code == 200
            readings = [reading(f"{suffix}-1", "scan", "2", f"{period}-03T10:00:00+01:00")]
            message = signed_message(key, readings, device_id=device_id, message_id=f"{suffix}-m1")
            assert client.post("/v1/usage", json=message, headers=auth("tok-device")).status_code == 202
            closed = client.post(f"/v1/contracts/{contract_id}/periods/{period}/close",
                                 headers=auth("tok-operator"))
            assert closed.status_code == 200, closed.text
            invoice_id = closed.json()["id"]
            disputed = client.post(f"/v1/invoices/{invoice_id}/dispute", json={"reason": "check the scans"},
                                   headers=auth("tok-customer"))
            assert disputed.status_code == 200, disputed.text
            services = client.app.state.services
            lifecycle = services.lifecycle
            deadline = time.monotonic() + 120
            while seen(services, contract_id) < 3 and time.monotonic() < deadline:
                lifecycle.catch_up(timeout=2.0)  # the Gateway's event stream catches up
            assert seen(services, contract_id) == 3
            services.delivery.run_until_idle()
            events = []
            for headers, body, status in receiver.requests:
                assert status == 200 and verify_webhook(SECRET, body, headers)
                events.append(json.loads(body))
            mine = [e for e in events if e["contract_id"] == contract_id]
            assert Counter(e["type"] for e in mine) == Counter(
                {"contract.activated": 1, "invoice.issued": 1, "invoice.disputed": 1})
            assert len({e["id"] for e in mine}) == 3
            assert all(len(e["tx_id"]) == 64 for e in mine)

            with services.db.begin() as session:  # replay the channel's events from block 0
                session.delete(session.get(EventCheckpoint, "lifecycle-webhooks"))
            sent = len(receiver.requests)
            assert lifecycle.catch_up(timeout=5.0) == 0
            services.delivery.run_until_idle()
            assert len(receiver.requests) == sent
    finally:
        receiver.close()
        ledger.close()
