"""Named, versioned keys (the Vault transit / AWS KMS model) on top of a key backend.

A *key* is a name (`endorser-ProviderMSP`) with numbered versions. Each version is one key pair in the
backend (an HSM token, or PEM files for software mode) plus its certificate. `rotate` adds a version and
makes it current; old versions stay so their signatures still verify, but only the current version
signs. `disable` makes a key refuse to sign until `enable` (reversible, like KMS). Every signature made
through `signer()` lands in the key audit log.

The registry (names, versions, key ids, certificates, status) is one JSON file in the data dir, written
atomically under a file lock so the CLI and a running server can both change it; the server re-reads it
when its mtime changes, so `ledgerhub keys disable` takes effect on the next signature (ADR 0014).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.keys import certs
from hub.keys.audit_log import AuditLog, _file_lock
from hub.keys.signer import Signer, SoftwareSigner, verify_bytes

Purpose = Literal["ca", "endorser", "client", "documents"]
NODE_OU: dict[str, certs.NodeOU | None] = {
    "ca": None, "endorser": "peer", "client": "client", "documents": "client",
}


class KeyManagerError(Exception):
    """A key-management refusal with a stable code (mapped to problem+json by the router)."""

    status = 409

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        if status is not None:
            self.status = status


class KeyBackend(Protocol):
    kind: str

    def generate(self, label: str) -> Signer: ...

    def load(self, key_id: str) -> Signer: ...


class Pkcs11Backend:
    kind = "pkcs11"

    def __init__(self, token: Any) -> None:  # hub.keys.pkcs11.TokenSession
        self.token = token

    def generate(self, label: str) -> Signer:
        return self.token.generate_ec_key(label)

    def load(self, key_id: str) -> Signer:
        from hub.keys.pkcs11 import Pkcs11Signer

        return Pkcs11Signer(self.token, key_id)


class SoftwareBackend:
    """PEM files (0600) in a directory. Tests and demos without SoftHSM only."""

    kind = "software"

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def generate(self, label: str) -> Signer:
        signer = SoftwareSigner()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{signer.key_id}.pem"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                signer.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return signer

    def load(self, key_id: str) -> Signer:
        key = serialization.load_pem_private_key((self.dir / f"{key_id}.pem").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return SoftwareSigner(key)


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    key_id: str
    label: str
    created_at: str
    certificate_pem: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class KeyManager:
    def __init__(self, keys_dir: Path, backend: KeyBackend, audit: AuditLog | None = None) -> None:
        self.dir = Path(keys_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.audit = audit if audit is not None else AuditLog(self.dir / "audit.jsonl")
        self.registry_path = self.dir / "registry.json"
        self._lock = threading.RLock()
        self._state: dict[str, Any] = {"keys": {}}
        self._stamp: tuple[int, int] | None = None
        self._signers: dict[str, Signer] = {}
        self._reload(force=True)

    def __repr__(self) -> str:
        return f"KeyManager({str(self.dir)!r}, backend={self.backend.kind})"

    # --- registry persistence ---------------------------------------------------------------------

    def _reload(self, force: bool = False) -> None:
        try:
            st = self.registry_path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if force or stamp != self._stamp:
            with self._lock:
                self._state = json.loads(self.registry_path.read_text())
                self._stamp = stamp

    def _save(self) -> None:
        tmp = self.registry_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self._state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.registry_path)
        st = self.registry_path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def _mutate(self) -> Any:
        with self._lock, _file_lock(self.dir / "registry.lock"):
            self._reload(force=True)
            yield self._state["keys"]
            self._save()

    def _entry(self, name: str) -> dict[str, Any]:
        self._reload()
        entry = self._state["keys"].get(name)
        if entry is None:
            raise KeyManagerError("unknown_key", f"no key named {name!r}", 404)
        return entry

    # --- lifecycle --------------------------------------------------------------------------------

    def _new_version(
        self, name: str, org: str, purpose: str, version: int, external_ca: dict[str, str] | None = None
    ) -> dict[str, Any]:
        label = f"hub-{name}#v{version}"
        signer = self.backend.generate(label)
        if purpose == "ca":
            cert = certs.create_ca(signer, org)
        elif external_ca:
            cert = self._enroll_external(name, signer, purpose, external_ca)
        else:
            ca_signer = self._version_signer(f"ca-{org}", None, op="certificate-issue")
            ca_cert = ca_signer.certificate()
            assert ca_cert is not None
            subject = certs.org_name(org, f"{name}.{org.lower()}", NODE_OU[purpose])
            cert = certs.issue_certificate(
                ca_cert, certs.SignerPrivateKey(ca_signer), signer.public_key(), subject
            )
        self._signers[signer.key_id] = signer
        return {
            "version": version, "key_id": signer.key_id, "label": label, "created_at": _now(),
            "certificate": certs.cert_pem(cert),
        }

    def create(self, name: str, org: str, purpose: Purpose) -> dict[str, Any]:
        """Create key `name` (version 1). CA keys first: other keys' certificates are issued by `ca-{org}`."""
        if purpose not in NODE_OU:
            raise KeyManagerError("bad_purpose", f"unknown purpose {purpose!r}", 422)
        # one critical section (thread lock + file lock) from the existence check to the write, so two
        # processes running `ensure` at once cannot both create version 1
        with self._mutate() as keys:
            if name in keys:
                raise KeyManagerError("key_exists", f"key {name!r} already exists")
            v1 = self._new_version(name, org, purpose, 1)
            keys[name] = {
                "name": name, "org": org, "purpose": purpose, "enabled": True, "current": 1,
                "created_at": v1["created_at"], "versions": [v1],
            }
        return self.describe(name)

    def ensure(self, name: str, org: str, purpose: Purpose) -> bool:
        """Create `name` unless it exists. True if created."""
        self._reload()
        if name in self._state["keys"]:
            return False
        try:
            self.create(name, org, purpose)
        except KeyManagerError as exc:
            if exc.code != "key_exists":  # another process created it meanwhile: fine
                raise
            return False
        return True

    def ensure_org_keys(self, orgs: Iterable[str], documents_orgs: Iterable[str] = ()) -> list[str]:
        """CA, endorser and client keys for each org, document keys where asked. Idempotent."""
        created = []
        for org in orgs:
            for purpose in ("ca", "endorser", "client"):
                name = f"{purpose}-{org}"
                if self.ensure(name, org, purpose):  # type: ignore[arg-type]
                    created.append(name)
        for org in documents_orgs:
            if self.ensure(f"documents-{org}", org, "documents"):
                created.append(f"documents-{org}")
        return created

    def rotate(self, name: str) -> dict[str, Any]:
        entry = self._entry(name)
        if entry["purpose"] == "ca":
            raise KeyManagerError(
                "ca_rotation_unsupported",
                "rotating an org CA re-issues every certificate under it; not supported here",
            )
        with self._mutate() as keys:  # numbering and switching in one critical section
            entry = keys[name]
            version = max(v["version"] for v in entry["versions"]) + 1
            new = self._new_version(name, entry["org"], entry["purpose"], version, entry.get("external_ca"))
            entry["versions"].append(new)
            entry["current"] = version
        return self.describe(name)

    def _enroll_external(
        self, name: str, signer: Signer, purpose: str, external_ca: dict[str, str]
    ) -> x509.Certificate:
        ca_pem = Path(external_ca["ca_cert"]).read_bytes()
        ca_org = certs.load_cert(ca_pem).subject
        orgs = [str(a.value) for a in ca_org if a.oid.dotted_string == "2.5.4.10"]
        cn = f"{name}.{orgs[0] if orgs else 'org'}".lower()
        node_ou = NODE_OU[purpose] or "client"
        return certs.enroll_with_ca(ca_pem, external_ca["ca_key"], signer, cn, node_ou)

    def enroll_external(self, name: str, ca_cert_path: Path, ca_key_path: Path) -> dict[str, Any]:
        """Re-issue the current version's certificate from an external CA (cryptogen's CA for a real
        Fabric network: `crypto-config/peerOrganizations/<org>/ca/{ca.*-cert.pem,priv_sk}`). Later
        rotations enrol with the same CA. The key itself stays where it is."""
        entry = self._entry(name)
        if entry["purpose"] == "ca":
            raise KeyManagerError("bad_purpose", "a CA key is not enrolled", 422)
        ext = {"ca_cert": str(Path(ca_cert_path).resolve()), "ca_key": str(Path(ca_key_path).resolve())}
        info = self.version_info(name)
        cert = self._enroll_external(name, self._backend_signer(info), entry["purpose"], ext)
        with self._mutate() as keys:
            keys[name]["external_ca"] = ext
            for v in keys[name]["versions"]:
                if v["version"] == info.version:
                    v.setdefault("previous_certificates", []).append(v["certificate"])
                    v["certificate"] = certs.cert_pem(cert)
        return self.describe(name)

    def external_ca(self, name: str) -> dict[str, str] | None:
        """The external (Fabric) CA files this key enrols with, if any."""
        return self._entry(name).get("external_ca")

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        self._entry(name)
        with self._mutate() as keys:
            keys[name]["enabled"] = enabled
        return self.describe(name)

    def disable(self, name: str) -> dict[str, Any]:
        return self.set_enabled(name, False)

    def enable(self, name: str) -> dict[str, Any]:
        return self.set_enabled(name, True)

    # --- reading ----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        self._reload()
        return sorted(self._state["keys"])

    def describe(self, name: str) -> dict[str, Any]:
        entry = self._entry(name)
        versions = []
        for v in entry["versions"]:
            cert = certs.load_cert(v["certificate"])
            versions.append({
                "version": v["version"], "key_id": v["key_id"], "label": v["label"],
                "created_at": v["created_at"], "not_after": cert.not_valid_after_utc.isoformat(),
                "subject": cert.subject.rfc4514_string(),
            })
        return {
            "name": name, "org": entry["org"], "purpose": entry["purpose"], "enabled": entry["enabled"],
            "current_version": entry["current"], "backend": self.backend.kind, "versions": versions,
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(n) for n in self.names()]

    def version_info(self, name: str, version: int | None = None) -> VersionInfo:
        entry = self._entry(name)
        wanted = entry["current"] if version is None else version
        for v in entry["versions"]:
            if v["version"] == wanted:
                return VersionInfo(
                    name, v["version"], v["key_id"], v["label"], v["created_at"], v["certificate"]
                )
        raise KeyManagerError("unknown_key_version", f"key {name!r} has no version {wanted}", 404)

    def certificate(self, name: str, version: int | None = None) -> x509.Certificate:
        return certs.load_cert(self.version_info(name, version).certificate_pem)

    def certificates(self, name: str) -> dict[int, x509.Certificate]:
        return {v["version"]: certs.load_cert(v["certificate"]) for v in self._entry(name)["versions"]}

    def find_key_id(self, key_id: str) -> tuple[str, int] | None:
        self._reload()
        for name, entry in self._state["keys"].items():
            for v in entry["versions"]:
                if v["key_id"] == key_id:
                    return name, v["version"]
        return None

    # --- signing ----------------------------------------------------------------------------------

    def _backend_signer(self, info: VersionInfo) -> Signer:
        signer = self._signers.get(info.key_id)
        if signer is None:
            with self._lock:
                signer = self._signers.get(info.key_id)
                if signer is None:
                    signer = self.backend.load(info.key_id)
                    self._signers[info.key_id] = signer
        return signer

    def _version_signer(self, name: str, version: int | None, op: str) -> VersionSigner:
        return VersionSigner(self, self.version_info(name, version), op)

    def signer(self, name: str, operation: str = "sign") -> ManagedSigner:
        """A `Signer` that always uses the current version of `name` and logs every use as `operation`."""
        self._entry(name)
        return ManagedSigner(self, name, operation)

    def check_enabled(self, name: str) -> None:
        if not self._entry(name)["enabled"]:
            raise KeyManagerError("key_disabled", f"key {name!r} is disabled; enable it to sign again")

    def verify(
        self,
        name: str,
        data: bytes,
        signature: bytes,
        *,
        version: int | None = None,
        key_id: str | None = None,
    ) -> int | None:
        """The version whose key verifies `signature` over `data` (SHA-256), or None.

        With `version` or `key_id` (e.g. a JWS `kid`) only that version is tried; otherwise all of them,
        newest first. Disabled keys still verify: disabling stops new signatures only.
        """
        entry = self._entry(name)
        for v in sorted(entry["versions"], key=lambda v: -v["version"]):
            if version is not None and v["version"] != version:
                continue
            if key_id is not None and v["key_id"] != key_id:
                continue
            public = certs.load_cert(v["certificate"]).public_key()
            if isinstance(public, ec.EllipticCurvePublicKey) and verify_bytes(public, signature, data):
                return int(v["version"])
        return None

    def flush(self) -> None:
        self.audit.flush()

    def close(self) -> None:
        self.audit.close()


class VersionSigner:
    """One version of a managed key: refuses when the key is disabled; logs every signature."""

    def __init__(self, manager: KeyManager, info: VersionInfo, operation: str) -> None:
        self._m = manager
        self.info = info
        self.operation = operation
        self._cert = certs.load_cert(info.certificate_pem)
        self._inner = manager._backend_signer(info)

    def __repr__(self) -> str:
        return f"VersionSigner({self.info.name}#v{self.info.version}, op={self.operation})"

    @property
    def key_id(self) -> str:
        return self.info.key_id

    @property
    def version(self) -> int:
        return self.info.version

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    def certificate(self) -> x509.Certificate:
        return self._cert

    def sign(self, digest: bytes) -> bytes:
        self._m.check_enabled(self.info.name)
        signature = self._inner.sign(digest)
        self._m.audit.record(
            key=self.info.name, version=self.info.version, key_id=self.info.key_id, op=self.operation,
            digest=digest,
        )
        return signature


class ManagedSigner:
    """Follows the current version of a named key (rotation takes effect on the next call)."""

    def __init__(self, manager: KeyManager, name: str, operation: str) -> None:
        self._m = manager
        self.name = name
        self.operation = operation
        self._current: VersionSigner | None = None

    def __repr__(self) -> str:
        return f"ManagedSigner({self.name}, op={self.operation})"

    def pinned(self) -> VersionSigner:
        """The current version, fixed: key id, certificate and signatures stay consistent across calls."""
        info = self._m.version_info(self.name)
        current = self._current
        if current is None or current.info.key_id != info.key_id:
            current = self._current = VersionSigner(self._m, info, self.operation)
        return current

    @property
    def key_id(self) -> str:
        return self.pinned().key_id

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.pinned().public_key()

    def certificate(self) -> x509.Certificate:
        return self.pinned().certificate()

    def sign(self, digest: bytes) -> bytes:
        return self.pinned().sign(digest)

    def sign_data(self, data: bytes) -> tuple[VersionSigner, bytes]:
        """Sign SHA-256(data); returns which version signed, for signature metadata."""
        pinned = self.pinned()
        return pinned, pinned.sign(hashlib.sha256(data).digest())
