"""Sign a digest with a key on a node's SoftHSM2 token, in a child process (SoftHSM reads SOFTHSM2_CONF once
per process, and the test process may hold the hub's own token). Tests use it to sign with a retired node
key that the node itself no longer uses (ADR 0056).

    python -m tests.helpers.hsm_sign  < {"module", "label", "pin", "key_id", "digest"}  → {"signature"}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def sign_on_token(
    softhsm2_conf: Path, module: str, label: str, pin: str, key_id: str, digest: bytes
) -> bytes:
    """DER (low-S) ECDSA signature of the SHA-256 `digest` by key `key_id` on the token `label`."""
    request = {"module": module, "label": label, "pin": pin, "key_id": key_id, "digest": digest.hex()}
    env = {**os.environ, "SOFTHSM2_CONF": str(softhsm2_conf)}
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.hsm_sign"],
        input=json.dumps(request),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return bytes.fromhex(json.loads(out.stdout)["signature"])


def main() -> int:
    from hub.keys.pkcs11 import Pkcs11Signer, TokenSession

    request = json.loads(sys.stdin.read())
    token = TokenSession(request["module"], request["label"], request["pin"])
    signer = Pkcs11Signer(token, request["key_id"])
    print(json.dumps({"signature": signer.sign(bytes.fromhex(request["digest"])).hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
