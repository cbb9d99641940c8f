"""Hub processes on a real Fabric network for the consortium tests (ADRs 0065, 0068): `ledgerhub serve --org
ORG [--channel C]` with its own settings file, data dir (its own SQLite database) and ERP connectors, and the
waits and calls the tests make on them. Used by test_two_hubs_fabric, test_auditor_hub_fabric and
test_pair_channel_fabric. Every wait polls with a deadline; nothing asserts on elapsed time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.emulators.oracle_rest import OracleRestEmulator
from connectors.emulators.sap_soap import SapSoapEmulator
from tests.helpers.api import TOKENS
from tests.helpers.chaincode import CUSTOMER, PROVIDER
from tests.helpers.delivery import sap_settings
from tests.helpers.erp import PARTIES, oracle_settings
from tests.helpers.faults import free_port

DEADLINE = 240.0  # seconds any one wait may take on a loaded machine before the test fails


def wait_for(what: str, probe: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` past the deadline."""
    until = time.monotonic() + deadline
    last: Any = None
    while time.monotonic() < until:
        try:
            last = probe()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    pytest.fail(f"waited {deadline:.0f} s for {what}; last: {last!r}")


class HubProcess:
    """`python -m hub.cli serve --org ORG [--channel CHANNEL]` with its own settings file and data dir.
    `settings` are merged over the defaults; `configure(**changes)` rewrites the file for the next start."""

    def __init__(self, org: str, home: Path, network_json: Path, connectors: dict[str, Any], *,
                 channel: str | None = None, settings: dict[str, Any] | None = None) -> None:
        self.org, self.home, self.channel, self.port = org, home, channel, free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "settings.json"
        self.values: dict[str, Any] = {
            "ledger": "fabric",
            "fabric_network_dir": str(network_json),
            "data_dir": str(home / "data"),
            "tokens": TOKENS,
            "parties": PARTIES,
            "connectors": connectors,
            "scheduler_enabled": True,  # the reconciliation job runs under the scheduler
            "delivery": {"poll_seconds": 0.2, "reconcile_seconds": 1.0, "claim_seconds": 15.0,
                         "backoff_base": 0.5, "backoff_cap": 2.0},
        }
        self.configure(**(settings or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def name(self) -> str:
        return self.org if self.channel is None else f"{self.org} on {self.channel}"

    def configure(self, **changes: Any) -> None:
        self.values.update(changes)
        self.config.write_text(json.dumps(self.values))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        channel = ["--channel", self.channel] if self.channel is not None else []
        return [sys.executable, "-m", "hub.cli", "serve", "--org", self.org, *channel,
                "--port", str(self.port), "--log-level", "warning"]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHUB_")}
        env.update(LEDGERHUB_CONFIG=str(self.config), PYTHONUNBUFFERED="1")
        self.starts += 1
        log = (self.home / f"hub-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        wait_for(f"{self.name}'s hub to be ready", self._ready)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name}'s hub exited {self.proc.returncode}: {self.log_tail()}")
        return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def log_tail(self) -> str:
        return "".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("hub-*.log")))

    def call(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"},
                             timeout=120, **kw)


@contextlib.contextmanager
def two_hubs(network_json: Path, tmp_path: Path, *, customer: str = CUSTOMER, channel: str | None = None,
             settings: dict[str, Any] | None = None, provider_settings: dict[str, Any] | None = None,
             ) -> Iterator[tuple[HubProcess, HubProcess, SapSoapEmulator, OracleRestEmulator]]:
    """The provider's hub (SAP) and `customer`'s hub (Oracle), each with its own database and ERP emulator,
    both on `channel` (None: the network's default), started; stopped on exit. `settings` go to both hubs,
    `provider_settings` (over them) to the provider's."""
    with contextlib.ExitStack() as stack:
        sap = stack.enter_context(SapSoapEmulator())
        oracle = stack.enter_context(OracleRestEmulator(shared_dir=None))
        suffix = "" if channel is None else f"-{channel}"
        provider = HubProcess(PROVIDER, tmp_path / f"provider-hub{suffix}", network_json,
                              {"sap-soap": sap_settings(sap, timeout=30.0, connect_timeout=5.0)},
                              channel=channel, settings={**(settings or {}), **(provider_settings or {})})
        other = HubProcess(customer, tmp_path / f"customer-hub{suffix}", network_json,
                           {"oracle-rest": oracle_settings(oracle, timeout=30.0)}, channel=channel,
                           settings=settings)
        for hub in (provider, other):
            stack.callback(hub.stop)
            hub.start()
        yield provider, other, sap, oracle


def deliveries(hub: HubProcess, invoice_id: str, token: str) -> list[dict[str, Any]]:
    r = hub.call("GET", "/v1/deliveries", token, params={"invoice": invoice_id})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def delivered(hub: HubProcess, invoice_id: str, token: str) -> list[dict[str, Any]]:
    """The hub's delivery rows of the invoice once all are delivered, else []."""
    rows = deliveries(hub, invoice_id, token)
    return rows if rows and all(r["state"] == "delivered" for r in rows) else []


def close_period(provider: HubProcess, contract_id: str, period: str) -> str:
    """The operator closes the period on the provider's hub (the API's close, not the scheduler's)."""
    closed = provider.call("POST", f"/v1/contracts/{contract_id}/periods/{period}/close", "tok-operator")
    assert closed.status_code in (200, 201), closed.text
    return str(closed.json()["id"])


def invoice_on(hub: HubProcess, invoice_id: str, token: str) -> dict[str, Any]:
    r = hub.call("GET", f"/v1/invoices/{invoice_id}", token)
    assert r.status_code == 200, r.text
    return dict(r.json())
