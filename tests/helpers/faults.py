"""A hub process for the fault tests: `python -m tests.helpers.faults PORT`.

It is `ledgerhub serve` (the app wires the ERP delivery engine itself), with one test knob: the
delivery options (short claim leases, fast polling) so a killed worker's claims come back within seconds
instead of the production 120 s. The embedded ledger, the database, the projector, the usage batcher and
the delivery loop all run in this one process, so a SIGKILL takes every one of them down at once,
as a crash in production would.
Settings come from LEDGERHUB_* like `ledgerhub serve`; LEDGERHUB_TEST_DELIVERY (JSON) sets DeliveryOptions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_hub(env: dict[str, str], port: int, log: Path,
              module: str = "tests.helpers.faults") -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-m", module, str(port)], env={**os.environ, **env}, cwd=root,
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise AssertionError(f"hub exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("hub never became ready")


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            kill(proc)


def main(argv: list[str]) -> None:
    import logging

    import uvicorn

    from hub.api.app import create_app
    from hub.config import load_settings
    from hub.delivery.dispatcher import DeliveryOptions
    from hub.delivery.service import DeliveryService

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    options = os.environ.get("LEDGERHUB_TEST_DELIVERY")  # short claims: a killed worker's rows return fast
    if not options:
        app = create_app(settings)  # wires keys and delivery itself, like `ledgerhub serve`
    else:
        def configure(services: Any) -> None:
            services.delivery = DeliveryService(services.ledger, services.db, services.settings,
                                                options=DeliveryOptions(**json.loads(options)),
                                                clock=services.clock)  # started by the lifespan

        app = create_app(settings, areas=("keys",), configure=configure)
    uvicorn.run(app, host="127.0.0.1", port=int(argv[0]), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
