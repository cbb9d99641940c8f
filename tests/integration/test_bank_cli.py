"""`ledgerhub bank import FILE` opens the ledger and database the settings name, like `ledgerhub serve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from tests.helpers.camt import E, camt

pytestmark = pytest.mark.integration


def test_cli_imports_once_and_refuses_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LEDGERHUB_CONFIG", raising=False)
    monkeypatch.delenv("LEDGERHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("LEDGERHUB_LEDGER", raising=False)
    statement = tmp_path / "camt054.xml"
    statement.write_bytes(camt([E("CLI-1", "12.34", debtor="Somebody")], kind="054"))
    runner = CliRunner()
    first = runner.invoke(app, ["bank", "import", str(statement)])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["entries"] == 1 and report["duplicates"] == 0
    assert [(q["state"], q["reason"]) for q in report["queued"]] == [("unmatched", "no_reference")]
    second = runner.invoke(app, ["bank", "import", str(statement)])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["duplicates"] == 1
    bad = tmp_path / "bad.xml"
    bad.write_bytes(statement.read_bytes().replace(b'Ccy="EUR"', b'Ccy="EURO"'))
    refused = runner.invoke(app, ["bank", "import", str(bad)])
    assert refused.exit_code == 2
    assert json.loads(refused.stderr)["code"] == "unknown_currency"
