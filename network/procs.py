"""Node processes: start detached with pid files, wait on real readiness signals, stop for certain.

Why detached (own session and process group): `ledgerhub network up` returns while the nodes keep running,
and `down` from another shell must find and stop them; a process group also lets us stop anything a node
spawned (the external builder scripts). Why pid files carry the start time: a pid may be reused after a
crash, and we must never signal a stranger's process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class NetworkError(RuntimeError):
    """A node failed to start, a step failed, or a readiness check ran out of time."""


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if the process is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after the closing parenthesis are fixed
    rest = raw[raw.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return rest[19]


def alive(pid: int, start_time: str | None = None) -> bool:
    """True while `pid` runs (not a zombie) and, when given, still has the recorded start time."""
    with contextlib.suppress(ChildProcessError):  # reap our own finished child: no zombie left behind
        os.waitpid(pid, os.WNOHANG)
    current = _start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


@dataclass(frozen=True)
class NodeProcess:
    name: str
    pid: int
    start_time: str | None
    log: Path

    def is_alive(self) -> bool:
        return alive(self.pid, self.start_time)


def start(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    pids_dir: Path,
    logs_dir: Path,
    cwd: Path | None = None,
) -> NodeProcess:
    """Start `argv` in its own session, output to logs/<name>.log, and record pids/<name>.json."""
    pids_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    log = logs_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    node = NodeProcess(name, proc.pid, _start_time(proc.pid), log)
    (pids_dir / f"{name}.json").write_text(
        json.dumps(
            {
                "name": name,
                "pid": node.pid,
                "start_time": node.start_time,
                "log": str(log),
                "argv": list(argv),
            }
        )
    )
    return node


def recorded(pids_dir: Path) -> list[NodeProcess]:
    """The nodes whose pid files are in `pids_dir` (alive or not)."""
    nodes = []
    for f in sorted(pids_dir.glob("*.json")) if pids_dir.is_dir() else []:
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        nodes.append(NodeProcess(d["name"], int(d["pid"]), d.get("start_time"), Path(d.get("log", ""))))
    return nodes


def stop(node: NodeProcess, grace: float = 10.0) -> bool:
    """SIGTERM the node's process group, SIGKILL after `grace` seconds; True when nothing is left.

    A node whose own process already ended may have left children in its group: they are stopped too.
    Linux never hands out a pid that is still some group's id, so a live group with the node's pid as
    its id is the node's; if another process holds the pid now, the node's group is gone."""
    if not node.is_alive() and (_start_time(node.pid) is not None or not group_alive(node.pid)):
        return True
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(node.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not node.is_alive() and not group_alive(node.pid):
                return True
            time.sleep(0.05)
    return not node.is_alive() and not group_alive(node.pid)


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in process group `pgid` (children a node left behind)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            return True
    return False


def group_rss_kb(pgid: int) -> int:
    """Resident memory (VmRSS, kB) summed over the live processes of process group `pgid`."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
            rest = raw[raw.rindex(")") + 2 :].split()
            if rest[0] == "Z" or int(rest[2]) != pgid:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


# ---- readiness ----


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    watch: Sequence[NodeProcess] = (),
    interval: float = 0.2,
) -> T:
    """Poll `probe` until it returns a value (not None/False). Fails fast when a watched node dies, so a
    crash shows its log tail instead of a timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        for node in watch:
            if not node.is_alive():
                raise NetworkError(f"{node.name} exited while waiting for {what}:\n{tail(node.log)}")
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise NetworkError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback http only
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def healthz(port: int) -> bool:
    """The operations endpoint's /healthz answers 200 {"status":"OK"} once every registered checker passes."""
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    return status == 200 and '"OK"' in body


def metric(port: int, name: str, labels: Mapping[str, str]) -> float | None:
    """One Prometheus sample from the operations endpoint's /metrics, None if absent."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    for line in body.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def free_port_base(first: int = 27050, step: int = 100, span: int = 50) -> int:
    """The first port base from `first` whose `span` ports are all free to bind on 127.0.0.1: a network
    the demo or the tests start must not collide with a developer's own one on the default base."""
    for base in range(first, 60000, step):
        ok = True
        for port in range(base, base + span):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise NetworkError("no free block of ports for a Fabric network")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float = 120.0, cwd: Path | None = None) -> str:
    """Run a CLI step (peer, osnadmin, configtxgen...) to completion and return its stdout.

    Only stdout: the `peer` CLI writes its log lines to stderr, and callers parse the answer (JSON from
    `getinfo`, `querycommitted`, `checkcommitreadiness`) out of what is returned. Both streams go into the
    error when the step fails."""
    proc = subprocess.run(
        list(argv),
        env=dict(env),
        cwd=str(cwd) if cwd else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise NetworkError(
            f"{Path(argv[0]).name} {' '.join(argv[1:4])} ... failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc.stdout
