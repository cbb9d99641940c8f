"""The network tooling's LEDGERHUB_* variables come from one typed model (network/settings.py), with the
names and defaults the modules read on their own before; network/ still imports nothing of the hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from network import admin, hsm
from network.layout import NETWORK_DIR, default_bin_dir, default_port_base, default_run_dir
from network.settings import NetworkSettings

VARIABLES = ("LEDGERHUB_FABRIC_BIN", "LEDGERHUB_FABRIC_RUN_DIR", "LEDGERHUB_DATA_DIR",
             "LEDGERHUB_FABRIC_PORT_BASE", "LEDGERHUB_FABRIC_HSM", "LEDGERHUB_FABRIC_PKCS11_BIN",
             "LEDGERHUB_FABRIC_PKCS11_MODULE", "LEDGERHUB_FABRIC_LOG_SPEC")


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean: pytest.MonkeyPatch) -> None:
    assert default_bin_dir() == Path.home() / ".cache" / "ledgerhub" / "fabric-3.1.5" / "bin"
    assert hsm.pkcs11_bin_dir() == Path.home() / ".cache" / "ledgerhub" / "fabric-3.1.5-pkcs11" / "bin"
    assert default_run_dir() == NETWORK_DIR / ".run"
    assert default_port_base() == 17050
    assert not hsm.default_hsm()
    assert hsm.module_path() == "/usr/lib/softhsm/libsofthsm2.so"
    assert admin.base_env()["FABRIC_LOGGING_SPEC"] == "info"


def test_each_variable_reaches_its_reader(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean.setenv("LEDGERHUB_FABRIC_BIN", str(tmp_path / "bin"))
    clean.setenv("LEDGERHUB_FABRIC_PKCS11_BIN", str(tmp_path / "p11"))
    clean.setenv("LEDGERHUB_DATA_DIR", str(tmp_path / "data"))
    clean.setenv("LEDGERHUB_FABRIC_PORT_BASE", "23000")
    clean.setenv("LEDGERHUB_FABRIC_HSM", "yes")
    clean.setenv("LEDGERHUB_FABRIC_PKCS11_MODULE", "/opt/p11.so")
    clean.setenv("LEDGERHUB_FABRIC_LOG_SPEC", "debug")
    assert default_bin_dir() == tmp_path / "bin" and hsm.pkcs11_bin_dir() == tmp_path / "p11"
    assert default_run_dir() == tmp_path / "data" / "fabric"  # the hub's data dir, when no run dir
    clean.setenv("LEDGERHUB_FABRIC_RUN_DIR", str(tmp_path / "run"))
    assert default_run_dir() == tmp_path / "run"  # read again on each call: a later change counts
    assert default_port_base() == 23000 and hsm.default_hsm() and hsm.module_path() == "/opt/p11.so"
    assert admin.base_env()["FABRIC_LOGGING_SPEC"] == "debug"


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("yes", True), ("0", False),
                                           ("no", False), ("false", False), ("on", False), ("", False)])
def test_hsm_switch_as_before(clean: pytest.MonkeyPatch, value: str, on: bool) -> None:
    clean.setenv("LEDGERHUB_FABRIC_HSM", value)
    assert hsm.default_hsm() is on


def test_an_empty_variable_counts_as_unset(clean: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        clean.setenv(name, "")
    assert NetworkSettings() == NetworkSettings.model_construct()  # every default
    assert default_run_dir() == NETWORK_DIR / ".run" and default_port_base() == 17050


@pytest.mark.parametrize("value", ["80", "65500", "x"])
def test_port_base_out_of_range_or_not_a_number_is_refused(clean: pytest.MonkeyPatch, value: str) -> None:
    clean.setenv("LEDGERHUB_FABRIC_PORT_BASE", value)
    with pytest.raises(ValueError, match=r"LEDGERHUB_FABRIC_PORT_BASE|fabric_port_base"):
        default_port_base()


def test_a_typo_as_a_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="fabric_port_bas"):
        NetworkSettings(fabric_port_bas=1)  # type: ignore[call-arg]


def test_network_imports_nothing_of_the_hub() -> None:
    code = ("import sys, network.settings, network.layout, network.hsm, network.admin\n"
            "print(sorted(m for m in sys.modules if m == 'hub' or m.startswith('hub.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
