"""`ledgerhub keys init|list|rotate|disable|enable|verify-log` in real subprocesses with their own token.

Each run is a separate process, as an operator would run it: `keys init` writes the SoftHSM conf and
token under the data dir and the later commands find them there (no SOFTHSM2_CONF needed).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import leakscan
from tests.helpers.softhsm import softhsm_available

pytestmark = [pytest.mark.integration, pytest.mark.hsm,
              pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 not installed")]

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path, pin: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHUB_", "SOFTHSM2_"))}
    env.update(LEDGERHUB_DATA_DIR=str(data_dir), LEDGERHUB_SIGNER="pkcs11",
               LEDGERHUB_PKCS11_TOKEN_LABEL="cli-token")
    if pin is not None:
        env["LEDGERHUB_PKCS11_PIN"] = pin
    return env


def run(data_dir: Path, pin: str | None, *args: str, main: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m hub.keys.cli ARGS` (lighter), or with main=True the real `ledgerhub keys ARGS` mount."""
    cmd = [sys.executable, "-m", "hub.cli", "keys"] if main else [sys.executable, "-m", "hub.keys.cli"]
    return subprocess.run([*cmd, *args], env=_env(data_dir, pin), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    pin = "cli-" + secrets.token_hex(8)
    leakscan.remember(pin)
    proc = run(data_dir, pin, "init", "--json", main=True)
    assert proc.returncode == 0, proc.stderr
    keys = json.loads(proc.stdout)
    assert {k["name"] for k in keys} >= {"ca-ProviderMSP", "endorser-ProviderMSP", "client-CustomerMSP",
                                          "documents-ProviderMSP"}
    assert all(k["backend"] == "pkcs11" and k["current_version"] == 1 for k in keys)
    assert pin not in proc.stdout + proc.stderr
    return data_dir, pin


def test_init_creates_conf_and_token_under_the_data_dir(initialised: tuple[Path, str]) -> None:
    data_dir, pin = initialised
    conf = data_dir / "softhsm" / "softhsm2.conf"
    assert conf.exists() and str(data_dir / "softhsm" / "tokens") in conf.read_text()
    assert any((data_dir / "softhsm" / "tokens").iterdir())
    assert (data_dir / "softhsm").stat().st_mode & 0o077 == 0
    again = run(data_dir, pin, "init", "--json")  # idempotent: same keys, no new versions
    assert again.returncode == 0, again.stderr
    assert "present" in again.stderr
    assert all(k["current_version"] == 1 for k in json.loads(again.stdout))


def test_list_rotate_disable_enable(initialised: tuple[Path, str]) -> None:
    data_dir, pin = initialised
    listed = json.loads(run(data_dir, pin, "list", "--json").stdout)
    before = {k["name"]: k for k in listed}["client-ProviderMSP"]
    rotated = run(data_dir, pin, "rotate", "client-ProviderMSP", "--json")
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(rotated.stdout)[0]
    assert after["current_version"] == before["current_version"] + 1
    assert after["versions"][-1]["key_id"] != before["versions"][-1]["key_id"]
    disabled = run(data_dir, pin, "disable", "client-ProviderMSP", "--json")
    assert disabled.returncode == 0 and json.loads(disabled.stdout)[0]["enabled"] is False
    listed = {k["name"]: k for k in json.loads(run(data_dir, pin, "list", "--json").stdout)}
    assert listed["client-ProviderMSP"]["enabled"] is False
    enabled = run(data_dir, pin, "enable", "client-ProviderMSP", "--json")
    assert json.loads(enabled.stdout)[0]["enabled"] is True
    text = run(data_dir, pin, "list", main=True)  # through `ledgerhub keys`
    assert text.returncode == 0, text.stderr
    assert "client-ProviderMSP" in text.stdout and "pkcs11" in text.stdout
    check = run(data_dir, pin, "verify-log")
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True


def test_cli_refusals_have_codes_and_change_nothing(initialised: tuple[Path, str]) -> None:
    data_dir, pin = initialised
    before = run(data_dir, pin, "list", "--json").stdout
    unknown = run(data_dir, pin, "rotate", "no-such-key")
    assert unknown.returncode == 2 and "[unknown_key]" in unknown.stderr
    ca = run(data_dir, pin, "rotate", "ca-ProviderMSP")
    assert ca.returncode == 2 and "[ca_rotation_unsupported]" in ca.stderr
    wrong = "bad-" + pin
    bad_pin = run(data_dir, wrong, "rotate", "endorser-ProviderMSP")
    assert bad_pin.returncode == 2 and "[hsm_pin_incorrect]" in bad_pin.stderr
    assert wrong not in bad_pin.stderr + bad_pin.stdout
    assert run(data_dir, pin, "list", "--json").stdout == before


def test_init_without_a_pin_is_refused(tmp_path: Path) -> None:
    proc = run(tmp_path / "nopin", None, "init")
    assert proc.returncode == 2 and "[hsm_no_pin]" in proc.stderr
    assert not (tmp_path / "nopin" / "softhsm").exists()


def test_tampered_audit_log_fails_verify_log(initialised: tuple[Path, str]) -> None:
    data_dir, pin = initialised
    log = data_dir / "keys" / "audit.jsonl"
    original = log.read_bytes()
    try:
        log.write_bytes(original.replace(b'"op":"certificate-issue"', b'"op":"certificate-issuE"', 1))
        check = run(data_dir, pin, "verify-log")
        assert check.returncode == 1
        assert "content does not match its hash" in json.loads(check.stdout)["problems"][0]
    finally:
        log.write_bytes(original)
