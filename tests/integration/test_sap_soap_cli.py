"""`ledgerhub emulators` starts the SAP emulator on the port asked for and serves the real protocol until
it is told to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.base import ConnectorConfig, Delivery
from connectors.sap_soap import SapSoapConnector
from tests.integration.test_sap_soap_connector import document

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_emulators_command_serves_sap_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.emulators.cli", "--only", "sap-soap", "--sap-port", "0",
         "--sap-user", "LEDGERHUB", "--duration", "120"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "LEDGERHUB_EMULATOR_SAP_PASSWORD": "pw"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        info = json.loads(line)
        assert info["name"] == "sap-soap" and info["endpoint"].endswith("/journalentrycreaterequestconfi")
        settings = {"wsdl": info["wsdl_url"], "endpoint": info["endpoint"], "username": "LEDGERHUB",
                    "password": "pw"}
        conn = SapSoapConnector(ConnectorConfig("sap-soap", "provider", settings))
        ref = conn.deliver(document(), Delivery("d-1", str(uuid.uuid4()), "inv-1", "provider"))
        assert ref.document_id.isdigit()
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.stderr.read()


def test_unknown_fault_kind_and_emulator_are_refused() -> None:
    from connectors.emulators.cli import app

    result = CliRunner().invoke(app, ["--fault-kind", "meteor", "--duration", "0"])
    assert result.exit_code != 0 and "meteor" in result.output
    result = CliRunner().invoke(app, ["--only", "mainframe", "--duration", "0"])
    assert result.exit_code != 0 and "mainframe" in result.output


def test_hub_cli_mounts_the_emulators_command() -> None:
    from hub.cli import app

    result = CliRunner().invoke(app, ["emulators", "--help"])
    assert result.exit_code == 0 and "--sap-port" in result.output
