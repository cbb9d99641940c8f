"""network/install.sh decisions that do not need the Go module proxy: reuse, and a missing toolchain."""

from __future__ import annotations

import os
import shutil
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
        "LEDGERHUB_FABRIC_SRC": "/nonexistent/fabric-src.tar.xz",  # the go-install route unless a test says
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


def _fake_source(tmp_path: Path) -> tuple[Path, str]:
    tarball = tmp_path / "fabric-src.tar.xz"
    tarball.write_bytes(b"not really a tarball, only its hash matters here")
    import hashlib

    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_a_build_of_the_same_source_is_reused_without_go(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    _stand_ins(bins)
    tarball, sha = _fake_source(tmp_path)
    (bins / ".ledgerhub-stamp").write_text(f"fabric {FABRIC_VERSION} {FABRIC_COMMIT} source {sha}\n")
    result = _install(bins, "/usr/bin:/bin", LEDGERHUB_FABRIC_SRC=str(tarball))
    assert result.returncode == 0, result.stderr
    assert "binaries present" in result.stdout


def test_changed_source_is_rebuilt_and_a_failed_build_fails_when_the_source_is_there(tmp_path: Path) -> None:
    """With the source present the Fabric tier is required by default: no silent skip."""
    bins = tmp_path / "bin"
    _stand_ins(bins)
    tarball, _ = _fake_source(tmp_path)
    (bins / ".ledgerhub-stamp").write_text(f"fabric {FABRIC_VERSION} {FABRIC_COMMIT} source {'0' * 64}\n")
    no_go = _install(bins, "/usr/bin:/bin", LEDGERHUB_FABRIC_SRC=str(tarball))
    assert no_go.returncode == 1
    assert "Go is not installed" in no_go.stderr
    go_dir = os.path.dirname(shutil.which("go") or "/usr/local/go/bin/go")
    broken = _install(bins, f"{go_dir}:/usr/bin:/bin", LEDGERHUB_FABRIC_SRC=str(tarball))
    assert broken.returncode == 1
    assert "cannot extract" in broken.stderr
    assert not (bins / ".ledgerhub-stamp").exists()  # a failed build leaves nothing that looks reusable
