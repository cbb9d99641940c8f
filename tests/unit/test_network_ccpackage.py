"""The CCaaS chaincode package: layout, determinism, package id."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from network import ccpackage
from network.cctls import make_chaincode_tls

pytestmark = pytest.mark.unit


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_package_layout_is_what_the_ccaas_builder_expects() -> None:
    pkg = ccpackage.build_package("billing_1", "127.0.0.1:17090")
    outer = _members(pkg)
    assert set(outer) == {"metadata.json", "code.tar.gz"}
    assert json.loads(outer["metadata.json"]) == {"type": "ccaas", "label": "billing_1"}
    inner = _members(outer["code.tar.gz"])
    assert set(inner) == {"connection.json"}
    conn = json.loads(inner["connection.json"])
    assert conn == {"address": "127.0.0.1:17090", "dial_timeout": "10s", "tls_required": False}


def test_same_input_same_bytes_and_id_is_label_plus_sha256() -> None:
    a = ccpackage.build_package("billing_1", "127.0.0.1:17090")
    b = ccpackage.build_package("billing_1", "127.0.0.1:17090")
    c = ccpackage.build_package("billing_1", "127.0.0.1:17091")
    assert a == b
    assert a != c
    assert ccpackage.package_id("billing_1", a) == "billing_1:" + hashlib.sha256(a).hexdigest()


def test_tls_package_carries_ca_and_client_pair(tmp_path: Path) -> None:
    tls = make_chaincode_tls(tmp_path / "cc")
    path, pid = ccpackage.write_package(tmp_path / "pkg", "billing_1", "127.0.0.1:17090", tls)
    assert pid == ccpackage.package_id("billing_1", path.read_bytes())
    conn = json.loads(_members(_members(path.read_bytes())["code.tar.gz"])["connection.json"])
    assert conn["tls_required"] is True
    assert conn["client_auth_required"] is True
    assert conn["root_cert"] == tls.ca_cert.read_text()
    assert conn["client_cert"] == tls.client_cert.read_text()
    assert "PRIVATE KEY" in conn["client_key"]


@pytest.mark.parametrize("label", ["", "a:b"])
def test_bad_label_is_refused(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        ccpackage.build_package(label, "127.0.0.1:1")
