"""The device SDK on a device: imported in a process where the hub's server stack cannot be imported
(fastapi, starlette, sqlalchemy, pydantic, uvicorn, alembic, psycopg, apscheduler, and the hub's own
packages), signing with a PEM key and with a P-256 key on a SoftHSM2 token through PKCS#11; the hub
accepts what it signed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.api import last_month, post_usage, setup_contract, ts
from tests.helpers.chaincode import DEVICE_ID, DeviceKey

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("fastapi", "starlette", "sqlalchemy", "pydantic", "pydantic_settings", "uvicorn", "alembic",
           "psycopg", "apscheduler", "hub", "chaincode", "connectors", "network")

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: a device has no server stack")
            return None
    sys.meta_path.insert(0, Blocker())
    for _name in BLOCKED:
        try:
            __import__(_name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"the blocker failed to block {{_name}}")
""")


def run_blocked(script: str, env: dict[str, str] | None = None, *args: str) -> str:
    code = BLOCKER + textwrap.dedent(script) + textwrap.dedent(f"""
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        assert not loaded, loaded
    """)
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_sdk_imports_and_works_without_the_server_stack(tmp_path):
    out = run_blocked(f"""
        import base64, json
        import rfc8785
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        import ledgerhub.device as sdk
        signer = sdk.PemSigner.generate({str(tmp_path / 'key.pem')!r})
        again = sdk.PemSigner.from_file({str(tmp_path / 'key.pem')!r})
        message = sdk.sign_message(again, {{"device_id": "d", "message_id": "m", "readings": []}})
        body = {{k: v for k, v in message.items() if k != "signature"}}
        signer.public_key().verify(base64.b64decode(message["signature"]), rfc8785.dumps(body),
                                   ec.ECDSA(hashes.SHA256()))
        client = sdk.DeviceClient("http://127.0.0.1:9", device_id="d", token="t", signer=signer,
                                  queue_path={str(tmp_path / 'q.sqlite')!r})
        client.add("r-1", metric="scan", quantity="1", timestamp="2026-11-03T09:15:00+01:00")
        print(json.dumps(client.status()))
    """)
    assert json.loads(out)["queued"] == 1
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0  # the key file is the owner's only


def test_the_blocker_blocks(tmp_path):
    """The check above can fail: importing the hub in the blocked process is refused."""
    code = BLOCKER + "\nimport hub.api.app\n"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode != 0 and "blocked" in run.stderr


@pytest.mark.hsm
def test_a_key_on_a_pkcs11_token_signs_what_the_hub_accepts(hsm_env, hsm_token, client, ledger, tmp_path):
    hsm_token.generate_ec_key("sdk-device-key")  # the device's key, made on the token, never extractable
    period, _ = last_month()
    env = hsm_env.subprocess_env(SDK_PIN=hsm_env.pin)
    out = run_blocked(f"""
        import json, os, sys
        from ledgerhub.device import Pkcs11Signer, sign_message
        from ledgerhub.device.signing import public_key_pem
        signer = Pkcs11Signer({hsm_env.module!r}, {hsm_env.token_label!r}, os.environ["SDK_PIN"],
                              key_label="sdk-device-key")
        readings = [{{"id": "r-hsm-1", "metric": "scan", "quantity": "1",
                      "timestamp": {ts(period, 4)!r}}}]
        message = sign_message(signer, {{"device_id": {DEVICE_ID!r}, "message_id": "m-hsm-1",
                                        "readings": readings}})
        print(json.dumps({{"pem": public_key_pem(signer), "message": message}}))
    """, env)
    signed = json.loads(out)
    setup_contract(client, DeviceKey(None, signed["pem"]))  # the asset carries the token key's public key
    r = post_usage(client, signed["message"])
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    forged = {**signed["message"], "message_id": "m-hsm-2"}  # the signature covers the message id
    assert post_usage(client, forged).json()["code"] == "bad_signature"
