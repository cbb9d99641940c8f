"""The CCaaS external builder scripts, run for real the way the peer runs them."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from network import ccpackage
from network.layout import NETWORK_DIR

pytestmark = pytest.mark.integration

BIN = NETWORK_DIR / "builders" / "ccaas" / "bin"


def _unpack(pkg: bytes, root: Path) -> tuple[Path, Path]:
    """What the peer does before calling the builder: metadata.json into one dir, code.tar.gz into another."""
    meta, src = root / "metadata", root / "src"
    meta.mkdir()
    src.mkdir()
    with tarfile.open(fileobj=io.BytesIO(pkg), mode="r:gz") as outer:
        (meta / "metadata.json").write_bytes(outer.extractfile("metadata.json").read())  # type: ignore[union-attr]
        code = outer.extractfile("code.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as inner:
        inner.extractall(src, filter="data")
    return src, meta


def _run(script: str, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, check=False)


def test_detect_claims_ccaas_only(tmp_path: Path) -> None:
    src, meta = _unpack(ccpackage.build_package("billing_1", "127.0.0.1:9"), tmp_path)
    assert _run("detect", src, meta).returncode == 0
    (meta / "metadata.json").write_text(json.dumps({"type": "golang", "label": "x"}))
    assert _run("detect", src, meta).returncode != 0
    (meta / "metadata.json").unlink()
    assert _run("detect", src, meta).returncode != 0


def test_build_then_release_publish_connection_json(tmp_path: Path) -> None:
    src, meta = _unpack(ccpackage.build_package("billing_1", "127.0.0.1:17090"), tmp_path)
    (src / "META-INF" / "statedb" / "couchdb" / "indexes").mkdir(parents=True)
    (src / "META-INF" / "statedb" / "couchdb" / "indexes" / "i.json").write_text("{}")
    out, rel = tmp_path / "out", tmp_path / "rel"
    out.mkdir()
    rel.mkdir()
    assert _run("build", src, meta, out).returncode == 0
    assert _run("release", out, rel).returncode == 0
    conn = json.loads((rel / "chaincode" / "server" / "connection.json").read_text())
    assert conn["address"] == "127.0.0.1:17090"
    assert (rel / "statedb" / "couchdb" / "indexes" / "i.json").is_file()


def test_build_fails_without_connection_json(tmp_path: Path) -> None:
    src, meta = _unpack(ccpackage.build_package("billing_1", "127.0.0.1:9"), tmp_path)
    (src / "connection.json").unlink()
    out = tmp_path / "out"
    out.mkdir()
    result = _run("build", src, meta, out)
    assert result.returncode != 0
    assert "connection.json" in result.stderr
