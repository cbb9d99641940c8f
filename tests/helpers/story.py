"""The billing story over the hub's HTTP API, on either ledger (tests/scenarios/).

- `story` fixture (parametrised; in tests/scenarios/conftest.py): a `Story` holding a ledger — a fresh
  embedded ledger, or a `FabricLedger` on the session's real network (`fabric_network`, marked `fabric`) —
  and a per-test `suffix`. The Fabric network is shared by the whole session, so every id a scenario writes
  (assets, contracts, message and reading ids) carries the suffix: `story.id("ctr")` -> `ctr-3f9a0c1e`;
- `Story.hub(...)`: a started hub app (TestClient) on that ledger, with the delivery engine installed
  (fast retry options) and whatever settings the scenario needs;
- `open_contract(client, story, ...)`: assets registered, the contract proposed and accepted over HTTP;
- `wait_until(...)`: poll a condition while the hub's background threads (projector, delivery, scheduler)
  work; gives up after a generous bound and says what it waited for;
- `invoice_bytes(invoice)`: the invoice's canonical JSON (the chaincode's own encoder) without the fields
  that say where and when it was committed, for comparing ledgers byte for byte.

Settings a scenario may need to adapt as other areas change (webhook URL rules, ingestion bounds) are in
one place: `LOCAL_WEBHOOKS` (overrides that let a hub call a receiver on 127.0.0.1) and `story_settings`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from chaincode.model import canonical
from hub.config import Settings
from tests.helpers.api import auth, embedded_ledger, hub_client, hub_settings
from tests.helpers.chaincode import DeviceKey, make_device_key, sample_asset, sample_contract
from tests.helpers.delivery import FAST
from tests.helpers.erp import PARTIES
from tests.helpers.webhooks import LOCAL_RECEIVERS

T = TypeVar("T")

# Settings that let a hub post alert webhooks to our receiver on loopback over plain http (ADR 0030).
LOCAL_WEBHOOKS: dict[str, Any] = dict(LOCAL_RECEIVERS)
WEBHOOK_SECRET = "story-receiver-secret-0123"

# Where and when something was committed, not what: differs between ledgers and runs.
VOLATILE = frozenset({
    "tx_id", "block", "at", "issued_at", "accepted_at", "proposed_tx", "accepted_tx", "closed_tx",
    "registered_tx", "paid_at", "posted_at", "disputed_at", "credited_at",
})


def strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def invoice_bytes(invoice: dict[str, Any]) -> bytes:
    """The invoice as the chaincode encodes it canonically, minus tx ids, blocks and commit times."""
    return canonical(strip_volatile(invoice))


@dataclass
class Story:
    kind: str  # "embedded" or "fabric"
    ledger: Any
    suffix: str
    tmp: Path

    def id(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    @contextmanager
    def hub(self, name: str = "hub", *, background: bool = False, scheduler: bool = False,
            clock: Callable[[], dt.datetime] | None = None, **overrides: Any) -> Iterator[TestClient]:
        """A hub app on this story's ledger; `name` picks its data dir (two hubs may share one)."""
        yield from _hub(self, name, background=background, scheduler=scheduler, clock=clock, **overrides)


def story_settings(story: Story, name: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"parties": PARTIES, "close_grace_seconds": 3600, **LOCAL_WEBHOOKS}
    values.update(overrides)
    return hub_settings(story.tmp / name, **values)


def _hub(story: Story, name: str, *, background: bool, scheduler: bool,
         clock: Callable[[], dt.datetime] | None, **overrides: Any) -> Iterator[TestClient]:
    from hub.delivery.service import install

    settings = story_settings(story, name, **overrides)
    kwargs: dict[str, Any] = {"background": background, "scheduler": scheduler,
                              "configure": lambda services: install(services, start=False, options=FAST)}
    if clock is not None:
        kwargs["clock"] = clock
    with hub_client(settings, story.ledger, **kwargs) as client:
        try:
            yield client
        finally:
            delivery = client.app.state.services.delivery
            if delivery is not None and not background:
                delivery.dispatcher.close()


def _open_ledger(kind: str, request: pytest.FixtureRequest, tmp: Path, extra_orgs: tuple[str, ...] = ()
                 ) -> Any:
    if kind == "embedded":
        return embedded_ledger(tmp / "ledger", extra_orgs)
    from hub.ledger.fabric import open_fabric_ledger

    network = request.getfixturevalue("fabric_network")
    return open_fabric_ledger(Settings(ledger="fabric", fabric_network_dir=network.network_json))


LEDGERS = ["embedded", pytest.param("fabric", marks=[pytest.mark.fabric])]


# Resident memory of the Fabric network's processes (orderer, peers, chaincode server), in kB summed over
# their process groups: "idle" before the first Fabric scenario, "peak" sampled while scenarios run. The
# suite's conftest prints them at the end of the run.
NETWORK_RSS_KB: dict[str, int] = {}


def network_rss_kb(network: Any) -> dict[str, int]:
    from network.procs import group_rss_kb

    return {node.name: group_rss_kb(node.pid) for node in network.nodes}


class RssSampler:
    """Samples the network's total resident memory every `every` seconds while a scenario runs."""

    def __init__(self, network: Any, every: float = 0.25) -> None:
        self.network = network
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(network_rss_kb(self.network).values()))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        NETWORK_RSS_KB["peak"] = max(NETWORK_RSS_KB.get("peak", 0), self.peak)


def open_ledger_for(kind: str, request: pytest.FixtureRequest, tmp: Path,
                    extra_orgs: tuple[str, ...] = ()) -> Any:
    """A ledger of `kind`: the `story` fixture's (tests/scenarios/conftest.py), and for tests that need both
    at once (the byte-for-byte comparison). `extra_orgs` get endorsement keys on the embedded ledger."""
    return _open_ledger(kind, request, tmp, extra_orgs)


# --- building the scenario over HTTP ----------------------------------------------------------------


def open_contract(client: TestClient, story: Story, *, name: str = "ctr", devices: int = 1,
                  keys: list[DeviceKey] | None = None, start: str, **overrides: Any,
                  ) -> tuple[dict[str, Any], list[DeviceKey]]:
    """Register `devices` assets (each with its own key), propose the sample contract on them, accept it.
    Returns (the accepted contract as the API answers it, the device keys)."""
    contract_id = story.id(name)
    asset_ids = [f"{contract_id}-dev{i}" for i in range(devices)]
    keys = keys or [make_device_key(f"{contract_id}-{i}") for i in range(devices)]
    for asset_id, key in zip(asset_ids, keys, strict=True):
        r = client.post("/v1/assets", json=sample_asset(key, asset_id), headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
    contract = sample_contract(id=contract_id, assets=asset_ids, start=start, **overrides)
    r = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "PROPOSED"
    r = client.post(f"/v1/contracts/{contract_id}/accept", headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ACTIVE"
    return r.json(), keys


def wait_until(what: str, probe: Callable[[], T | None], *, rounds: int = 1200,
               every: float = 0.1) -> T:
    """`probe()` until it returns something truthy (returned); fails naming `what` after `rounds` tries.
    The bound is generous (2 minutes by default): it catches a hub that never gets there, it times nothing."""
    pause = threading.Event()
    for _ in range(rounds):
        value = probe()
        if value:
            return value
        pause.wait(every)
    raise AssertionError(f"gave up waiting for {what}")


