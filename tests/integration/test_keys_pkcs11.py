"""The PKCS#11 signer on a real SoftHSM2 token: key attributes, signatures, threads, fork, wrong PIN."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from hub.keys.pkcs11 import HsmKeyNotFound, Pkcs11Signer
from hub.keys.signer import P256_N, is_low_s, ski, verify_bytes

pytestmark = [pytest.mark.integration, pytest.mark.hsm]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key(hsm_token) -> Pkcs11Signer:
    return hsm_token.generate_ec_key("hub-endorser-TestMSP#v1")


def test_private_key_is_sensitive_sign_only_and_never_extractable(key: Pkcs11Signer) -> None:
    attrs = key.private_attributes()
    assert attrs["sensitive"] and attrs["always_sensitive"]
    assert not attrs["extractable"] and attrs["never_extractable"]
    assert attrs["sign"] and not attrs["decrypt"] and not attrs["derive"]
    assert attrs["label"] == "hub-endorser-TestMSP#v1"
    with pytest.raises(pkcs11.AttributeSensitive):
        key.read_private_value()


def test_cka_id_is_the_fabric_ski_of_the_public_point(key: Pkcs11Signer, hsm_token) -> None:
    assert key.key_id == ski(key.public_key())
    assert len(key.key_id) == 64
    with hsm_token.lock:
        session = hsm_token.session()
        pubs = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                         Attribute.ID: bytes.fromhex(key.key_id)}))
    assert len(pubs) == 1 and pubs[0][Attribute.LABEL] == "hub-endorser-TestMSP#v1"


def test_signatures_verify_and_are_always_low_s(key: Pkcs11Signer) -> None:
    for i in range(300):
        data = f"message {i}".encode()
        sig = key.sign(hashlib.sha256(data).digest())
        assert is_low_s(sig)
        assert verify_bytes(key.public_key(), sig, data)
        assert not verify_bytes(key.public_key(), sig, data + b"x")


def test_the_token_really_returns_high_s_values_that_get_normalised(key: Pkcs11Signer) -> None:
    """Guard that the low-S test above exercises the conversion: raw token output is often high-S."""
    raw_high = 0
    digest = hashlib.sha256(b"x").digest()
    for _ in range(100):
        with key._token.lock:
            raw = key._private().sign(digest, mechanism=pkcs11.Mechanism.ECDSA)
        raw_high += int.from_bytes(raw[32:], "big") > P256_N // 2
    assert raw_high > 0


def test_sign_rejects_non_digest_input(key: Pkcs11Signer) -> None:
    with pytest.raises(ValueError):
        key.sign(b"not a digest")


def test_unknown_key_id_is_a_clear_error(hsm_token) -> None:
    with pytest.raises(HsmKeyNotFound) as exc:
        Pkcs11Signer(hsm_token, "00" * 32)
    assert exc.value.code == "hsm_key_not_found"


def test_concurrent_signing_from_many_threads(key: Pkcs11Signer) -> None:
    results: list[tuple[bytes, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            local = []
            for i in range(200):
                data = f"{t}-{i}".encode()
                local.append((data, key.sign(hashlib.sha256(data).digest())))
            with lock:
                results.extend(local)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 16 * 200
    assert all(verify_bytes(key.public_key(), sig, data) and is_low_s(sig) for data, sig in results)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_process_signs_after_fork(key: Pkcs11Signer) -> None:
    key.sign(hashlib.sha256(b"warm").digest())  # parent session is open before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            sig = key.sign(hashlib.sha256(b"from the child").digest())
            os.write(w, sig)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        sig = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert verify_bytes(key.public_key(), sig, b"from the child")
    # and the parent's session still works
    assert verify_bytes(key.public_key(), key.sign(hashlib.sha256(b"parent").digest()), b"parent")


WRONG_PIN_SCRIPT = r"""
import hashlib, json, sys
import hub.keys.pkcs11 as p
calls = {"open": 0}
real_load = p._load_lib
class CountingToken:
    def __init__(self, t): self.t = t
    def open(self, **kw):
        calls["open"] += 1
        return self.t.open(**kw)
class CountingLib:
    def __init__(self, lib): self.lib = lib
    def get_token(self, **kw): return CountingToken(self.lib.get_token(**kw))
    def reinitialize(self): self.lib.reinitialize()
p._load_lib = lambda m: CountingLib(real_load(m))
ts = p.token_session(p.SOFTHSM_MODULE, sys.argv[1], sys.argv[2])
out = []
for _ in range(3):
    try:
        ts.session()
        out.append({"ok": True})
    except p.HsmError as e:
        out.append({"code": e.code, "msg": str(e), "repr": repr(e)})
print(json.dumps({"attempts": calls["open"], "results": out, "repr": repr(ts)}))
"""


def test_wrong_pin_is_a_clear_error_and_never_retried(hsm_env) -> None:
    wrong = "wrong-" + hsm_env.pin[::-1]
    proc = subprocess.run(
        [sys.executable, "-c", WRONG_PIN_SCRIPT, hsm_env.token_label, wrong],
        env=hsm_env.subprocess_env(), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["attempts"] == 1
    assert report["results"][0]["code"] == "hsm_pin_incorrect"
    assert "PIN rejected" in report["results"][0]["msg"]
    assert all(r["code"] == "hsm_pin_incorrect" for r in report["results"])
    for text in (proc.stdout, proc.stderr):
        assert wrong not in text and hsm_env.pin not in text


def test_right_pin_in_another_process_still_works(hsm_env) -> None:
    """The token was not locked by the wrong-PIN attempt above (SoftHSM never locks; real HSMs do)."""
    script = (
        "import sys, hub.keys.pkcs11 as p\n"
        "from hub.keys.signer import sign_bytes, verify_bytes\n"
        "ts = p.token_session(p.SOFTHSM_MODULE, sys.argv[1], sys.argv[2])\n"
        "k = ts.generate_ec_key('hub-subprocess#v1')\n"
        "print(verify_bytes(k.public_key(), sign_bytes(k, b'm'), b'm'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, hsm_env.token_label, hsm_env.pin],
        env=hsm_env.subprocess_env(), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
