"""SoftHSM2 token setup for development, CI and the demo.

`softhsm2-util` only takes PINs on its command line (readable by every user in `/proc/<pid>/cmdline`) or
from a terminal, so it is used here only to list slots. The token is initialised through PKCS#11 itself
(C_InitToken with a random SO PIN, then C_InitPIN with the user's PIN as the SO) in a child process that
reads both PINs from a pipe on its stdin (`hub.keys.p11init`): no PIN reaches any command line. The SO PIN
is kept in a 0600 file next to the token (development only: a real HSM's SO credential belongs to its
security officer).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from hub.keys.pkcs11 import _LOCK, HsmError, reinitialize_library, write_softhsm_conf


def ensure_softhsm_conf(base: Path, *, set_env: bool = True) -> Path:
    """Create `base/softhsm2.conf` + `base/tokens/` if missing; point SOFTHSM2_CONF at it."""
    conf = base / "softhsm2.conf"
    if not conf.exists():
        conf = write_softhsm_conf(base)
    if set_env:
        os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def _child_env(conf: Path) -> dict[str, str]:
    """The environment for a child: this one pointed at `conf`, without the PIN variable (`ledgerhub keys
    init` may have it in its environment; a child has no use for it)."""
    env = {k: v for k, v in os.environ.items() if k != "LEDGERHUB_PKCS11_PIN"}
    return {**env, "SOFTHSM2_CONF": str(conf)}


def token_exists(conf: Path, label: str) -> bool:
    """Ask softhsm2-util (a separate process, so this process's library state is untouched)."""
    out = subprocess.run(
        [_util(), "--show-slots"], env=_child_env(conf),
        capture_output=True, text=True, check=False,
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith("Label:") and line.split(":", 1)[1].strip() == label:
            return True
    return False


def _util() -> str:
    path = shutil.which("softhsm2-util")
    if path is None:
        raise HsmError("softhsm2-util not found (apt-get install softhsm2)", "hsm_softhsm_missing")
    return path


def init_token(conf: Path, label: str, pin: str, module: str) -> bool:
    """Initialise a token `label` with user PIN `pin` unless it exists. Returns True if it was created.

    Must run before this process first loads `module` with this conf (SoftHSM lists tokens at
    C_Initialize), or in a fresh process; afterwards this process's library is re-initialised to see it.
    """
    if token_exists(conf, label):
        return False
    so_pin = secrets.token_hex(16)
    so_file = conf.parent / f"so-pin-{label}"
    so_file.touch(mode=0o600, exist_ok=True)
    so_file.write_text(so_pin)
    request = json.dumps({"module": module, "label": label, "so_pin": so_pin, "pin": pin})
    result = subprocess.run(
        [sys.executable, "-m", "hub.keys.p11init"], input=request,
        env=_child_env(conf), capture_output=True, text=True, check=False,
    )
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = {"ok": False, "error": f"token initialisation exited with {result.returncode}"}
    if result.returncode != 0 or not answer.get("ok"):
        # the child's answer never contains PINs (they came over stdin and are not echoed)
        raise HsmError(f"token {label!r}: {answer.get('error', 'initialisation failed')}", "hsm_init_failed")
    with _LOCK:
        reinitialize_library(module)  # pick up the token just created by the other process
    return True
