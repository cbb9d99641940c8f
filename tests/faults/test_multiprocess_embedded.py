"""The embedded ledger is single-process, and says so: a second hub process on the same data directory is
refused at start-up (`embedded ledger ... is open elsewhere`) instead of forking the chain, and the first
keeps serving. This is why replicas share a Fabric ledger, not an embedded one (ADR 0021)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.helpers.api import TOKENS, auth
from tests.helpers.chaincode import make_device_key, sample_asset
from tests.helpers.faults import free_port, start_hub, stop, wait_ready

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_second_process_on_the_same_embedded_ledger_is_refused(tmp_path: Path) -> None:
    env = {"LEDGERHUB_DATA_DIR": str(tmp_path / "hub"), "LEDGERHUB_TOKENS": json.dumps(TOKENS),
           "LEDGERHUB_SCHEDULER_ENABLED": "false"}
    first_port, second_port = free_port(), free_port()
    first = start_hub(env, first_port, tmp_path / "first.log")
    second = None
    try:
        wait_ready(first_port, first, log=tmp_path / "first.log")
        second = start_hub(env, second_port, tmp_path / "second.log")
        assert second.wait(120) != 0, "a second process opened the same embedded ledger"
        assert "is open elsewhere" in (tmp_path / "second.log").read_text()
        r = httpx.post(f"http://127.0.0.1:{first_port}/v1/assets", json=sample_asset(make_device_key("mp")),
                       headers=auth("tok-provider"), timeout=30)
        assert r.status_code == 201, r.text  # the owner is unaffected
    finally:
        stop(first)
        if second is not None:
            stop(second)
