"""The chaincode-as-a-service package: what `peer lifecycle chaincode install` takes.

A package is a gzipped tar of `metadata.json` ({"type": "ccaas", "label": ...}) and `code.tar.gz`, which
holds only `connection.json` (where the chaincode server listens). Our external builder
(network/builders/ccaas) copies that file through to the peer, and the peer dials the server.

The bytes are deterministic (fixed mtimes, owners and order), so the same address and label always give
the same package id: `<label>:<hex sha256 of the package file>`, which is how the peer computes it
(`peer lifecycle chaincode calculatepackageid`). A different server address (or TLS material) is a
different package.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from network.cctls import ChaincodeTLS


def connection_json(address: str, tls: ChaincodeTLS | None = None, dial_timeout: str = "10s") -> bytes:
    """Where the peer dials, and (with `tls`) how: mutual TLS, trusting only the run's chaincode CA and
    presenting the peers' client certificate. The peer reads the PEM texts straight from this file."""
    doc: dict[str, object] = {"address": address, "dial_timeout": dial_timeout, "tls_required": False}
    if tls is not None:
        doc.update(
            tls_required=True,
            client_auth_required=True,
            root_cert=tls.ca_cert.read_text(),
            client_cert=tls.client_cert.read_text(),
            client_key=tls.client_key.read_text(),
        )
    return json.dumps(doc, sort_keys=True).encode()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_package(label: str, address: str, tls: ChaincodeTLS | None = None) -> bytes:
    if not label or ":" in label:
        raise ValueError(f"chaincode label {label!r} must be non-empty and free of ':'")
    metadata = json.dumps({"type": "ccaas", "label": label}, sort_keys=True).encode()
    code = _tar_gz({"connection.json": connection_json(address, tls)})
    return _tar_gz({"metadata.json": metadata, "code.tar.gz": code})


def package_id(label: str, package: bytes) -> str:
    return f"{label}:{hashlib.sha256(package).hexdigest()}"


def write_package(
    directory: Path, label: str, address: str, tls: ChaincodeTLS | None = None
) -> tuple[Path, str]:
    """Write `<label>.tar.gz` into `directory`; return its path and package id."""
    data = build_package(label, address, tls)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{label}.tar.gz"
    path.write_bytes(data)
    return path, package_id(label, data)
