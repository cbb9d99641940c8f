"""network/install.sh decisions that do not need the Go module proxy: reuse, and a missing toolchain."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from network.layout import FABRIC_COMMIT, FABRIC_VERSION, NETWORK_DIR

pytestmark = pytest.mark.integration

TOOLS = ("peer", "orderer", "configtxgen", "cryptogen", "osnadmin")


def _install(bin_dir: Path, path: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/tmp"),
        "LEDGERHUB_FABRIC_BIN": str(bin_dir),
        **extra,
    }
    return subprocess.run(
        ["bash", str(NETWORK_DIR / "install.sh")], env=env, capture_output=True, text=True, check=False
    )


def _stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    for tool in TOOLS:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)


def test_stamped_binaries_are_reused_without_go(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    _stand_ins(bins)
    (bins / ".ledgerhub-stamp").write_text(f"fabric {FABRIC_VERSION} {FABRIC_COMMIT}\n")
    result = _install(bins, "/usr/bin:/bin")  # no Go on this PATH: nothing must need it
    assert result.returncode == 0, result.stderr
    assert "binaries present" in result.stdout


def test_without_go_the_reason_is_recorded_and_make_test_goes_on(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    _stand_ins(bins)  # unstamped stand-ins that report no version: must be rebuilt, and cannot be
    result = _install(bins, "/usr/bin:/bin")
    assert result.returncode == 0
    assert "Go is not installed" in (tmp_path / "install-error.log").read_text()
    assert "will be skipped" in result.stderr


def test_required_makes_the_failure_fatal(tmp_path: Path) -> None:
    result = _install(tmp_path / "bin", "/usr/bin:/bin", LEDGERHUB_FABRIC_REQUIRED="1")
    assert result.returncode == 1
    assert "Go is not installed" in result.stderr
