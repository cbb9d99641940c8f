"""Key lifecycle on a SoftHSM2 token: versions, rotation, disable/enable, verification, audit, wiring."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from hub.keys import build_identities, build_key_manager, build_signers
from hub.keys.audit_log import read_log, verify_log
from hub.keys.certs import node_ou_of, verify_issued_by
from hub.keys.manager import KeyManager, KeyManagerError, Pkcs11Backend
from hub.keys.pkcs11 import Pkcs11Signer
from hub.keys.signer import is_low_s, sign_bytes, verify_bytes

pytestmark = [pytest.mark.integration, pytest.mark.hsm]


def test_org_keys_live_on_the_token_with_certificates_from_the_org_ca(hsm_manager, hsm_token) -> None:
    names = hsm_manager.names()
    assert names == sorted([
        "ca-AuditorMSP", "ca-CustomerMSP", "ca-ProviderMSP", "client-AuditorMSP", "client-CustomerMSP",
        "client-ProviderMSP", "documents-ProviderMSP", "endorser-AuditorMSP", "endorser-CustomerMSP",
        "endorser-ProviderMSP",
    ])
    on_token = dict(hsm_token.list_keys())
    for name in names:
        info = hsm_manager.version_info(name)
        assert on_token[info.key_id] == f"hub-{name}#v1"
    ca = hsm_manager.certificate("ca-ProviderMSP")
    endorser = hsm_manager.certificate("endorser-ProviderMSP")
    client = hsm_manager.certificate("client-ProviderMSP")
    assert verify_issued_by(endorser, ca) and verify_issued_by(client, ca)
    assert not verify_issued_by(endorser, hsm_manager.certificate("ca-CustomerMSP"))
    assert node_ou_of(endorser) == ["peer"] and node_ou_of(client) == ["client"]
    assert endorser.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "ProviderMSP"


def test_rotation_signs_with_the_new_version_and_old_signatures_still_verify(hsm_manager) -> None:
    signer = hsm_manager.signer("endorser-ProviderMSP", "embedded-endorsement")
    old_id = signer.key_id
    old_sig = sign_bytes(signer, b"before rotation")
    described = hsm_manager.rotate("endorser-ProviderMSP")
    assert described["current_version"] == 2 and len(described["versions"]) == 2
    assert signer.key_id != old_id  # the managed signer follows the current version
    new_sig = sign_bytes(signer, b"after rotation")
    assert verify_bytes(signer.public_key(), new_sig, b"after rotation")
    assert not verify_bytes(signer.public_key(), old_sig, b"before rotation")
    assert hsm_manager.verify("endorser-ProviderMSP", b"before rotation", old_sig) == 1
    assert hsm_manager.verify("endorser-ProviderMSP", b"after rotation", new_sig) == 2
    assert hsm_manager.verify("endorser-ProviderMSP", b"before rotation", old_sig, key_id=old_id) == 1
    assert hsm_manager.verify("endorser-ProviderMSP", b"before rotation", old_sig, version=2) is None
    assert hsm_manager.verify("endorser-ProviderMSP", b"tampered", old_sig) is None
    certs = hsm_manager.certificates("endorser-ProviderMSP")
    assert set(certs) == {1, 2} and certs[1] != certs[2]
    assert verify_issued_by(certs[2], hsm_manager.certificate("ca-ProviderMSP"))
    assert hsm_manager.version_info("endorser-ProviderMSP").label == "hub-endorser-ProviderMSP#v2"


def test_disabled_key_refuses_to_sign_until_enabled(hsm_manager) -> None:
    signer = hsm_manager.signer("client-CustomerMSP", "fabric-proposal")
    sig = sign_bytes(signer, b"ok")
    hsm_manager.disable("client-CustomerMSP")
    with pytest.raises(KeyManagerError) as exc:
        sign_bytes(signer, b"refused")
    assert exc.value.code == "key_disabled"
    assert hsm_manager.verify("client-CustomerMSP", b"ok", sig) == 1  # verification keeps working
    assert hsm_manager.describe("client-CustomerMSP")["enabled"] is False
    hsm_manager.enable("client-CustomerMSP")
    assert verify_bytes(signer.public_key(), sign_bytes(signer, b"again"), b"again")


def test_refusals_have_stable_codes(hsm_manager) -> None:
    cases = [
        (lambda: hsm_manager.rotate("no-such-key"), "unknown_key"),
        (lambda: hsm_manager.disable("no-such-key"), "unknown_key"),
        (lambda: hsm_manager.signer("no-such-key"), "unknown_key"),
        (lambda: hsm_manager.rotate("ca-ProviderMSP"), "ca_rotation_unsupported"),
        (lambda: hsm_manager.create("endorser-ProviderMSP", "ProviderMSP", "endorser"), "key_exists"),
        (lambda: hsm_manager.create("x", "ProviderMSP", "bogus"), "bad_purpose"),
        (lambda: hsm_manager.version_info("endorser-ProviderMSP", 9), "unknown_key_version"),
    ]
    before = hsm_manager.list()
    for call, code in cases:
        with pytest.raises(KeyManagerError) as exc:
            call()
        assert exc.value.code == code
    assert hsm_manager.list() == before  # refusals change nothing


def test_every_signature_is_in_the_audit_log(hsm_manager) -> None:
    signer = hsm_manager.signer("documents-ProviderMSP", "invoice-document")
    digests = []
    for i in range(25):
        data = f"invoice {i}".encode()
        digests.append(hashlib.sha256(data).hexdigest())
        sign_bytes(signer, data)
    hsm_manager.flush()
    entries = [e for e in read_log(hsm_manager.audit.path) if e["op"] == "invoice-document"]
    assert [e["digest"] for e in entries] == digests
    info = hsm_manager.version_info("documents-ProviderMSP")
    assert {(e["key"], e["version"], e["key_id"]) for e in entries} == {(info.name, 1, info.key_id)}
    # issuing certificates with the CA key is a key use too
    everything = read_log(hsm_manager.audit.path)
    assert any(e["op"] == "certificate-issue" and e["key"] == "ca-ProviderMSP" for e in everything)
    assert verify_log(hsm_manager.audit.path).ok


def test_a_second_manager_on_the_same_registry_sees_changes(hsm_manager, hsm_token) -> None:
    """The CLI and the server are separate processes sharing the registry file."""
    signer = hsm_manager.signer("endorser-CustomerMSP")
    other = KeyManager(hsm_manager.dir, Pkcs11Backend(hsm_token))
    other.disable("endorser-CustomerMSP")
    with pytest.raises(KeyManagerError):
        sign_bytes(signer, b"x")
    other.enable("endorser-CustomerMSP")
    other.rotate("endorser-CustomerMSP")
    assert signer.key_id == other.version_info("endorser-CustomerMSP").key_id
    other.close()


def test_registry_holds_no_private_material(hsm_manager) -> None:
    text = hsm_manager.registry_path.read_text()
    assert "PRIVATE KEY" not in text
    assert not list(Path(hsm_manager.dir).glob("**/*.pem"))


def test_build_signers_gives_pkcs11_endorsers_per_org(pkcs11_settings, pkcs11_signers) -> None:
    assert set(pkcs11_signers) == {"ProviderMSP", "CustomerMSP", "AuditorMSP"}
    manager = build_key_manager(pkcs11_settings)
    assert manager.backend.kind == "pkcs11"
    for org, signer in pkcs11_signers.items():
        inner = manager._backend_signer(manager.version_info(f"endorser-{org}"))
        assert isinstance(inner, Pkcs11Signer)
        sig = sign_bytes(signer, b"endorse")
        assert is_low_s(sig) and verify_bytes(signer.certificate().public_key(), sig, b"endorse")
    identities = build_identities(pkcs11_settings)
    msp, cert, signer = identities["CustomerMSP"]
    assert msp == "CustomerMSP" and node_ou_of(cert) == ["client"]
    assert build_signers(pkcs11_settings)["ProviderMSP"].key_id == pkcs11_signers["ProviderMSP"].key_id


def test_software_mode_keeps_the_same_shape(tmp_path: Path) -> None:
    from hub.config import Settings

    settings = Settings(data_dir=tmp_path / "sw", signer="software")
    signers = build_signers(settings)
    manager = build_key_manager(settings)
    assert manager.backend.kind == "software"
    assert verify_bytes(signers["ProviderMSP"].public_key(), sign_bytes(signers["ProviderMSP"], b"m"), b"m")
    for pem in (tmp_path / "sw" / "keys" / "software").glob("*.pem"):
        assert pem.stat().st_mode & 0o077 == 0
    manager.close()


def test_embedded_ledger_endorses_with_pkcs11_signers(pkcs11_settings, pkcs11_signers) -> None:
    """The embedded ledger's endorsements are made on the token and land in the key audit log."""
    from hub.keys import build_ca_certs
    from tests.helpers.embedded import CUSTOMER, PROVIDER, arg, open_toy_ledger

    ledger = open_toy_ledger(
        pkcs11_settings.data_dir / "ledger", pkcs11_signers, ca_certs=build_ca_certs(pkcs11_settings)
    )
    try:
        commit = ledger.submit("put", [arg({"key": "a", "value": "hsm"})], as_org=PROVIDER)
        assert commit.valid
        assert ledger.evaluate("get", [arg({"key": "a"})], as_org=CUSTOMER) == b"hsm"
        record = ledger.tx(commit.tx_id)
        assert record.status == "VALID"
    finally:
        ledger.close()
    manager = build_key_manager(pkcs11_settings)
    manager.flush()
    ops = {(e["key"], e["op"]) for e in read_log(manager.audit.path)}
    assert ("endorser-ProviderMSP", "embedded-endorsement") in ops
    assert verify_log(manager.audit.path).ok


ROTATE_SCRIPT = r"""
import sys
from pathlib import Path
from hub.keys.manager import KeyManager, Pkcs11Backend
from hub.keys.pkcs11 import SOFTHSM_MODULE, token_session
m = KeyManager(Path(sys.argv[1]), Pkcs11Backend(token_session(SOFTHSM_MODULE, sys.argv[2], sys.argv[3])))
for _ in range(3):
    m.rotate("endorser-AuditorMSP")
m.close()
"""


def test_two_processes_rotating_at_once_get_distinct_versions(hsm_env, hsm_manager) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", ROTATE_SCRIPT, str(hsm_manager.dir), hsm_env.token_label,
                          hsm_env.pin], env=hsm_env.subprocess_env(), cwd=root, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    described = hsm_manager.describe("endorser-AuditorMSP")
    assert [v["version"] for v in described["versions"]] == list(range(1, 8))
    assert described["current_version"] == 7
    assert len({v["key_id"] for v in described["versions"]}) == 7
    signer = hsm_manager.signer("endorser-AuditorMSP")
    assert hsm_manager.verify("endorser-AuditorMSP", b"m", sign_bytes(signer, b"m")) == 7
    assert verify_log(hsm_manager.audit.path).ok


def test_embedded_ledger_survives_endorser_rotation(pkcs11_settings, pkcs11_signers) -> None:
    """With the org CAs as the ledger's roots, a rotated endorser key is trusted on reopen and the whole
    chain (old endorsements by v1, new ones by v2) still verifies."""
    from hub.keys import build_ca_certs
    from hub.ledger.verify import verify_ledger
    from tests.helpers.embedded import PROVIDER, arg, open_toy_ledger

    path = pkcs11_settings.data_dir / "ledger"
    ca_certs = build_ca_certs(pkcs11_settings)
    ledger = open_toy_ledger(path, pkcs11_signers, ca_certs=ca_certs)
    try:
        assert ledger.submit("put", [arg({"key": "a", "value": "v1"})], as_org=PROVIDER).valid
    finally:
        ledger.close()
    manager = build_key_manager(pkcs11_settings)
    manager.rotate(f"endorser-{PROVIDER}")
    ledger = open_toy_ledger(path, pkcs11_signers, ca_certs=ca_certs)
    try:
        assert ledger.submit("put", [arg({"key": "b", "value": "v2"})], as_org=PROVIDER).valid
        report = verify_ledger(ledger)
        assert report.ok, report.summary()
    finally:
        ledger.close()
    manager.flush()
    versions = {e["version"] for e in read_log(manager.audit.path) if e["key"] == f"endorser-{PROVIDER}"}
    assert versions == {1, 2}


def test_managed_signing_from_threads_and_a_forked_child_is_all_logged(hsm_manager) -> None:
    import os
    import threading

    signer = hsm_manager.signer("endorser-ProviderMSP", "threaded")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(100):
                data = f"{t}/{i}".encode()
                assert verify_bytes(signer.public_key(), sign_bytes(signer, data), data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sign_bytes(hsm_manager.signer("endorser-ProviderMSP", "forked-child"), b"child")
            hsm_manager.flush()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    hsm_manager.flush()
    entries = read_log(hsm_manager.audit.path)
    assert sum(e["op"] == "threaded" for e in entries) == 800
    child = [e for e in entries if e["op"] == "forked-child"]
    assert len(child) == 1 and child[0]["pid"] == pid
    assert child[0]["digest"] == hashlib.sha256(b"child").hexdigest()
    assert verify_log(hsm_manager.audit.path).ok
