"""Crashing nodes of the session's Fabric network and bringing them back (tests/fabric/test_faults_fabric.py).

`NodeKiller.kill(name)` sends SIGKILL to a node's whole process group (`kill -9`: no shutdown, no flush) after
reading, from /proc, exactly how the node was started (argv, environment, working directory);
`restart(spec)` starts it again the same way through `network.procs.start` (so `network down` and the
session fixture's teardown find the new process) and waits for the node's own readiness signal:
/healthz for a peer, /healthz plus a Raft leader for the orderer, the listening port for the chaincode
server. Capturing the start from /proc keeps this independent of how `network/` builds the node's
environment (software keys or an HSM): whatever the node ran with, it runs with again.

`Device` and `Closer` are the hub's callers during the crashes: they resend with the same ids until
they get their answer, as a real device and operator must.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from network.procs import NodeProcess, group_alive, healthz, metric, port_open, start, wait_until
from tests.helpers.api import auth
from tests.helpers.chaincode import signed_message
from tests.helpers.fabric_network import FabricNetwork

# bounds that fail a hang; never a measure
READY_TIMEOUT = 180.0
REQUEST_TIMEOUT = 150.0  # above the hub's own commit timeout (60 s) and what follows it
GIVE_UP = 600.0


@dataclass(frozen=True)
class NodeSpec:
    """How a node was started, read from /proc before it was killed."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def capture(node: NodeProcess) -> NodeSpec:
    proc = Path(f"/proc/{node.pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    env = dict(
        item.decode().split("=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item
    )
    return NodeSpec(node.name, argv, env, Path(os.readlink(proc / "cwd")))


class NodeKiller:
    """Kills and restarts nodes of `network` by name (`orderer`, `peer-<org key>`, `chaincode`)."""

    def __init__(self, network: FabricNetwork) -> None:
        self.network = network
        self.info: dict[str, Any] = network.info

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.network.nodes if n.name == name)

    def kill(self, name: str) -> NodeSpec:
        node = self.node(name)
        assert node.is_alive(), f"{name} is not running"
        spec = capture(node)
        os.killpg(node.pid, signal.SIGKILL)
        gone = lambda: not node.is_alive() and not group_alive(node.pid)  # noqa: E731
        wait_until(f"{name} gone after SIGKILL", gone, 30)
        return spec

    def restart(self, spec: NodeSpec) -> NodeProcess:
        layout = self.network.layout
        new = start(spec.name, spec.argv, spec.env, layout.pids_dir, layout.logs_dir, cwd=spec.cwd)
        nodes = self.network.nodes
        nodes[nodes.index(self.node(spec.name))] = new  # the fixture's teardown stops the new process
        self.wait_ready(spec.name, new)
        return new

    def wait_ready(self, name: str, node: NodeProcess) -> None:
        if name == "chaincode":
            host, _, port = self.info["chaincode"]["server_address"].rpartition(":")
            listening = lambda: port_open(int(port), host)  # noqa: E731
            wait_until("chaincode server listening", listening, READY_TIMEOUT, [node])
            return
        if name == "orderer":
            ops = _port(self.info["orderer"]["operations"])
            wait_until("orderer /healthz", lambda: healthz(ops), READY_TIMEOUT, [node])
            channel = self.info["channel"]
            wait_until(
                "orderer Raft leader",
                lambda: metric(ops, "consensus_etcdraft_is_leader", {"channel": channel}) == 1,
                READY_TIMEOUT,
                [node],
            )
            return
        org = name.removeprefix("peer-")
        ops = _port(self.info["orgs"][org]["peer"]["operations"])
        wait_until(f"{name} /healthz", lambda: healthz(ops), READY_TIMEOUT, [node])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- the hub's callers: devices that resend until acknowledged, an operator closing periods ------------


class Device(threading.Thread):
    """Sends signed messages one after the other through the hub's HTTP API, each with a fixed message id;
    a message without a 202 is sent again unchanged (after `Retry-After` when the hub gives one) until it
    is acknowledged, also after `stop` is set: only then does the device stop."""

    def __init__(self, name: str, base: str, key: Any, device_id: str, readings: int,
                 stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.base, self.key, self.device_id, self.per_message = base, key, device_id, readings
        self.stop = stop
        self.acked: dict[str, dict[str, Any]] = {}  # message id -> the 202 answer
        self.sent: set[str] = set()  # every reading id ever sent
        self.acked_readings: set[str] = set()
        self.stamps: set[str] = set()
        self.errors: list[str] = []
        self.refusals: Counter[str] = Counter()  # 5xx codes and transport failures seen (then resent)
        self.longest_wait = 0.0  # the longest a single request was held before any answer (printed)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            while not self.stop.is_set():
                n += 1
                stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(microsecond=0).isoformat()
                readings = [
                    {"id": f"{self.name}-{n}-{i}", "metric": "scan", "quantity": "1", "timestamp": stamp}
                    for i in range(self.per_message)
                ]
                message = signed_message(self.key, readings, device_id=self.device_id,
                                         message_id=f"{self.name}-m{n}")
                self.sent.update(r["id"] for r in readings)
                self.stamps.add(stamp)
                if not self.send(client, message):
                    return

    def send(self, client: httpx.Client, message: dict[str, Any]) -> bool:
        deadline = time.monotonic() + GIVE_UP
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                r = client.post(f"{self.base}/v1/usage", json=message, headers=auth("tok-device"))
            except httpx.TransportError as exc:  # hub down, or killed before it answered
                self.refusals[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            finally:
                self.longest_wait = max(self.longest_wait, time.monotonic() - began)
            if r.status_code == 202:
                self.acked[message["message_id"]] = r.json()
                self.acked_readings.update(x["id"] for x in message["readings"])
                return True
            if r.status_code >= 500:
                self.refusals[f"{r.status_code} {_code(r)}"] += 1
                time.sleep(min(float(r.headers.get("Retry-After", "0.5")), 2.0))
                continue
            self.errors.append(f"{message['message_id']}: {r.status_code} {r.text[:300]}")
            return False
        self.errors.append(f"{message['message_id']}: no 202 in {GIVE_UP:.0f} s")
        return False


class Closer(threading.Thread):
    """An operator closing billing periods as they are queued, each retried until the hub answers 200
    (closing is idempotent: a period closed by an attempt whose answer was lost answers its invoice)."""

    def __init__(self, base: str, contract_id: str) -> None:
        super().__init__(name="closer", daemon=True)
        self.base, self.contract_id = base, contract_id
        self.todo: queue.Queue[str | None] = queue.Queue()
        self.closed: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            while (period := self.todo.get()) is not None:
                self.close(client, period)

    def close(self, client: httpx.Client, period: str) -> None:
        deadline = time.monotonic() + GIVE_UP
        url = f"{self.base}/v1/contracts/{self.contract_id}/periods/{period}/close"
        while time.monotonic() < deadline:
            try:
                r = client.post(url, headers=auth("tok-operator"))
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if r.status_code == 200:
                self.closed.append(r.json()["id"])
                return
            if r.status_code >= 500:
                time.sleep(0.5)
                continue
            self.errors.append(f"{period}: {r.status_code} {r.text[:300]}")
            return
        self.errors.append(f"{period}: not closed in {GIVE_UP:.0f} s")


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", "?"))
    except ValueError:
        return "?"
