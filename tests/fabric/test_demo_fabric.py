"""`ledgerhub demo --ledger fabric`: the demo's whole story on a real Fabric network that the command brings
up and tears down. The invoice is the one the plan gives for the readings sent (recomputed independently, as
for the embedded demo), the peers of both parties endorsed it, and no node is left running."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from hub.demo import run_demo
from network import admin
from tests.helpers.fabric_network import skip_or_fail
from tests.integration.test_demo_smoke import expected_invoice

pytestmark = [pytest.mark.fabric, pytest.mark.e2e]


def test_demo_on_a_real_network_bills_what_the_plan_says_and_leaves_nothing_running(tmp_path: Path) -> None:
    reason = admin.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    out = io.StringIO()
    now = dt.datetime.now(dt.UTC)
    data = tmp_path / "demo"
    result = run_demo(data, Console(file=out, width=140, force_terminal=False), now=now, ledger_kind="fabric")
    text = out.getvalue()
    count, subtotal, total = expected_invoice(now)
    invoice = result.invoice
    assert invoice["readings"] == count == result.readings
    assert (Decimal(invoice["subtotal"]), Decimal(invoice["total"])) == (subtotal, total)
    assert result.refusals == {"duplicate": "duplicate_reading", "forged": "bad_signature"}
    assert result.replay_identical
    assert result.endorsers == [
        "CustomerMSP (peer0.customer.ledgerhub.local)",
        "ProviderMSP (peer0.provider.ledgerhub.local)",
    ]
    assert "Fabric network down" in text and "endorsed by CustomerMSP" in text
    # the batcher packed concurrent messages; several usage transactions may share a block since the orderer
    # cuts every 50 ms and the hub keeps two in flight (ADR 0039), so blocks no longer outnumber them
    assert 1 <= result.transactions <= result.messages and result.blocks > 1
    assert not (data / "fabric").exists()  # the run dir is removed by `down`
    assert not processes_mentioning(str(data / "fabric"))


def processes_mentioning(path: str) -> list[int]:
    """Live processes whose environment names `path` (every node the network starts gets its run dir in
    FABRIC_CFG_PATH / CORE_PEER_FILESYSTEMPATH / the chaincode's TLS paths)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if path.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
