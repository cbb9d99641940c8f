"""`ledgerhub audit verify` and `ledgerhub audit export` through the real `ledgerhub` command."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.cli import app
from tests.helpers.audit import INVOICE_ID, Billed, fresh
from tests.helpers.chaincode import CONTRACT_ID

pytestmark = pytest.mark.integration
runner = CliRunner()


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_verify_a_good_bundle(bundle: dict[str, Any], tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", str(_write(tmp_path / "good.json", bundle))])
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.output and INVOICE_ID in result.output
    as_json = runner.invoke(app, ["audit", "verify", "--json", str(tmp_path / "good.json")])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["ok"] is True


def test_verify_a_tampered_bundle(bundle: dict[str, Any], tmp_path: Path) -> None:
    tampered = fresh(bundle)
    reading = next(r for r in tampered["readings"] if r["id"] == "r-000017")
    reading["quantity"] = "3"
    path = _write(tmp_path / "tampered.json", tampered)
    result = runner.invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert (
        f"reading r-000017: quantity differs from recorded transaction {reading['tx_id'][:12]}"
        in result.output
    )
    as_json = runner.invoke(app, ["audit", "verify", "--json", str(path)])
    assert as_json.exit_code == 1
    failures = json.loads(as_json.output)["failures"]
    assert {"part": "reading r-000017", "check": "differs"} in [
        {"part": f["part"], "check": f["check"]} for f in failures
    ]


def test_verify_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    result = runner.invoke(app, ["audit", "verify", str(tmp_path / "junk.json")])
    assert result.exit_code == 2 and "not JSON" in result.output
    assert runner.invoke(app, ["audit", "verify", str(tmp_path / "absent.json")]).exit_code == 2
    other = _write(tmp_path / "other.json", {"format": "something-else/1"})
    result = runner.invoke(app, ["audit", "verify", str(other)])
    assert result.exit_code == 1 and "bundle: format is 'something-else/1'" in result.output


def test_export_from_a_bundle_file(bundle: dict[str, Any], tmp_path: Path) -> None:
    path = _write(tmp_path / "bundle.json", bundle)
    out = tmp_path / "out"
    base = ["audit", "export", "--contract", CONTRACT_ID, "--period", "2026-11", "--bundle", str(path)]
    csv_run = runner.invoke(app, [*base, "--format", "csv", "--out", str(out)])
    assert csv_run.exit_code == 0, csv_run.output
    assert (out / f"{INVOICE_ID}.readings.csv").exists() and (out / f"{INVOICE_ID}.lines.csv").exists()
    pdf_run = runner.invoke(app, [*base, "--format", "pdf", "--out", str(out)])
    assert pdf_run.exit_code == 0, pdf_run.output
    assert (out / f"{INVOICE_ID}.audit.pdf").read_bytes().startswith(b"%PDF")
    wrong = runner.invoke(
        app,
        [
            "audit",
            "export",
            "--contract",
            CONTRACT_ID,
            "--period",
            "2026-10",
            "--bundle",
            str(path),
            "--out",
            str(out),
        ],
    )
    assert wrong.exit_code == 2 and "not ctr-mri-001 2026-10" in wrong.output
    bad_format = runner.invoke(app, [*base, "--format", "xlsx", "--out", str(out)])
    assert bad_format.exit_code == 2


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "../../2026-11", "2026-11/x"])
def test_export_refuses_a_malformed_period_and_writes_nothing(tmp_path: Path, period: str) -> None:
    out = tmp_path / "out"
    args = ["audit", "export", "--contract", CONTRACT_ID, "--period", period, "--out", str(out),
            "--url", "http://127.0.0.1:9", "--token", "t"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "YYYY-MM" in result.output, result.output
    assert not out.exists()


def test_export_from_an_unreachable_hub_is_a_message(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["audit", "export", "--contract", CONTRACT_ID, "--period", "2026-11", "--out", str(tmp_path / "o"),
            "--url", f"http://127.0.0.1:{port}", "--token", "t"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "cannot reach the hub" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_export_from_the_ledger_named_by_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default source: the embedded ledger in LEDGERHUB_DATA_DIR, opened with the hub's own keys."""
    from hub.api.app import default_signers
    from hub.config import load_settings
    from hub.ledger import open_ledger
    from tests.helpers.api import last_month, ts
    from tests.helpers.chaincode import (
        make_device_key,
        reading,
        sample_asset,
        sample_contract,
        signed_message,
    )

    monkeypatch.setenv("LEDGERHUB_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    period, start = last_month()
    key = make_device_key("cli-export")
    ledger = open_ledger(settings, default_signers(settings))
    try:

        def submit(fn: str, body: Any, org: str) -> Any:
            return json.loads(ledger.submit(fn, [json.dumps(body)], as_org=org).payload)

        submit("RegisterAsset", sample_asset(key), settings.provider_org)
        submit("ProposeContract", sample_contract(start=start), settings.provider_org)
        submit("AcceptContract", {"contract_id": CONTRACT_ID}, settings.customer_org)
        msg = signed_message(
            key, [reading("c-1", timestamp=ts(period, 2)), reading("c-2", timestamp=ts(period, 5))]
        )
        submit("RecordUsage", {"messages": [msg]}, settings.provider_org)
        invoice = submit(
            "CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": period}, settings.provider_org
        )
    finally:
        ledger.close()
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "audit",
            "export",
            "--contract",
            CONTRACT_ID,
            "--period",
            period,
            "--format",
            "csv",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = (out / f"{invoice['id']}.lines.csv").read_text().splitlines()
    assert any(",scans,graduated,scan,2,170.00,EUR" in line for line in lines)
    readings = (out / f"{invoice['id']}.readings.csv").read_text().splitlines()
    assert len(readings) == 3 and readings[1].startswith("c-1,mri-berlin-01,scan,1,")


def test_verify_pinned_to_a_genesis(billed: Billed, bundle: dict[str, Any], tmp_path: Path) -> None:
    path = _write(tmp_path / "good.json", bundle)
    anchor = bytes(billed.ledger.block(0).hash).hex()
    assert runner.invoke(app, ["audit", "verify", "--genesis", anchor, str(path)]).exit_code == 0
    other = runner.invoke(app, ["audit", "verify", "--genesis", "cd" * 32, str(path)])
    assert other.exit_code == 1 and "the bundle comes from another network" in other.output


def test_export_from_a_running_hub(tmp_path: Path) -> None:
    """`--url/--token`: the proof fetched from a hub served by uvicorn on a free port (stopped after)."""
    import socket
    import threading

    import httpx
    import uvicorn

    from hub.api.app import create_app
    from tests.helpers.api import (
        auth,
        embedded_ledger,
        hub_settings,
        last_month,
        post_usage,
        setup_contract,
        ts,
    )
    from tests.helpers.chaincode import make_device_key, reading, signed_message

    ledger = embedded_ledger(tmp_path / "ledger")
    hub_app = create_app(hub_settings(tmp_path), ledger, background=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(hub_app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.02)
        assert server.started
        url = f"http://127.0.0.1:{port}"
        key = make_device_key("cli-url")
        period, _ = last_month()
        with httpx.Client(base_url=url, timeout=60) as client:
            setup_contract(client, key)
            r = post_usage(
                client, signed_message(key, [reading("u-1", timestamp=ts(period, 4))], message_id="u")
            )
            assert r.status_code == 202, r.text
            closed = client.post(
                f"/v1/contracts/{CONTRACT_ID}/periods/{period}/close", headers=auth("tok-operator")
            )
            assert closed.status_code == 200, closed.text
        out = tmp_path / "out"
        args = [
            "audit",
            "export",
            "--contract",
            CONTRACT_ID,
            "--period",
            period,
            "--format",
            "csv",
            "--out",
            str(out),
            "--url",
            url,
        ]
        ok = runner.invoke(app, [*args, "--token", "tok-auditor"])
        assert ok.exit_code == 0, ok.output
        assert (out / f"inv-{CONTRACT_ID}-{period}.readings.csv").read_text().count("u-1,") == 1
        refused = runner.invoke(app, [*args, "--token", "tok-other-customer"])
        assert refused.exit_code == 1 and "hub answered 404" in refused.output
        no_token = runner.invoke(app, args, env={"LEDGERHUB_TOKEN": ""})
        assert no_token.exit_code == 2
    finally:
        server.should_exit = True
        thread.join(30)
        ledger.close()
    assert not thread.is_alive()
