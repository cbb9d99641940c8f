"""A connector shipped as a separate package (tests/helpers/plugin_dist) is found through the
`ledgerhub.connectors` entry points and used by the delivery engine: built and installed with pip into a
temporary target directory, then exercised in a fresh interpreter that has that directory on sys.path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "tests" / "helpers" / "plugin_dist"

SCRIPT = r'''
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from connectors.base import registry
from hub.config import Settings
from tests.helpers.api import embedded_ledger
from tests.helpers.chaincode import PROVIDER
from tests.helpers.delivery import PARTIES, delivery_service, issue_invoices

work = Path(sys.argv[2])
print(json.dumps({"names": registry.names()}))
ledger = embedded_ledger(work / "ledger")
ids = issue_invoices(ledger, 2, erp={"provider": "echo-test"})
settings = Settings(data_dir=work / "hub", database_url=f"sqlite:///{work / 'hub.sqlite'}",
                    connectors={"echo-test": {"journal": str(work / "journal.jsonl")}}, parties=PARTIES)
service = delivery_service(ledger, settings)
service.run_until_idle()
rows = service.list()
refs = [json.loads(ledger.evaluate("GetInvoice", [json.dumps({"id": i})], as_org=PROVIDER))["erp_refs"]
        for i in ids]
service.dispatcher.close()
ledger.close()
print(json.dumps({"rows": rows, "refs": refs}))
'''


def test_connector_from_a_separately_installed_package_is_found_and_used(tmp_path: Path) -> None:
    target = tmp_path / "site"
    source = tmp_path / "plugin_dist"  # setuptools builds in the source tree: keep the repo clean
    shutil.copytree(DIST, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert list(target.glob("ledgerhub_echo_connector-*.dist-info/entry_points.txt"))
    # without the plugin on the path, the registry does not know the name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    names = "from connectors.base import registry; print(registry.names())"
    plain = subprocess.run([sys.executable, "-c", names], check=False, capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=120)
    assert "echo-test" not in plain.stdout
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(target), str(work)], check=False,
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert "echo-test" in lines[0]["names"] and "sap-soap" in lines[0]["names"]
    result = lines[-1]
    assert [r["state"] for r in result["rows"]] == ["delivered", "delivered"]
    journal = [json.loads(line) for line in (work / "journal.jsonl").read_text().splitlines()]
    assert sorted(e["invoice_id"] for e in journal) == sorted(r["invoice_id"] for r in result["rows"])
    assert {e["document_id"] for e in journal} == {r["erp_ref"]["document_id"] for r in result["rows"]}
    assert all(refs[0]["system"] == "echo-test" for refs in result["refs"])
