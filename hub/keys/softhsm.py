"""SoftHSM2 token setup for development, CI and the demo.

`softhsm2-util` only takes PINs on its command line (visible in `ps`) or from a terminal. So the token
is initialised with a random SO PIN and a random throw-away user PIN, and the real user PIN is then set
through PKCS#11 (C_SetPIN): the real PIN never reaches a command line. The SO PIN is kept in a 0600
file next to the token (development only: a real HSM's SO credential belongs to its security officer).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pkcs11

from hub.keys.pkcs11 import _LOCK, HsmError, _load_lib, reinitialize_library, write_softhsm_conf


def ensure_softhsm_conf(base: Path, *, set_env: bool = True) -> Path:
    """Create `base/softhsm2.conf` + `base/tokens/` if missing; point SOFTHSM2_CONF at it."""
    conf = base / "softhsm2.conf"
    if not conf.exists():
        conf = write_softhsm_conf(base)
    if set_env:
        os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def token_exists(conf: Path, label: str) -> bool:
    """Ask softhsm2-util (a separate process, so this process's library state is untouched)."""
    out = subprocess.run(
        [_util(), "--show-slots"], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
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
    C_Initialize), or in a fresh process.
    """
    if token_exists(conf, label):
        return False
    so_pin = secrets.token_hex(16)
    tmp_pin = secrets.token_hex(16)
    so_file = conf.parent / f"so-pin-{label}"
    so_file.touch(mode=0o600, exist_ok=True)
    so_file.write_text(so_pin)
    result = subprocess.run(
        [_util(), "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", tmp_pin],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)}, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        # the output never contains PINs (they were arguments, not echoed)
        raise HsmError(f"softhsm2-util --init-token failed: {result.stderr.strip()[:300]}", "hsm_init_failed")
    with _LOCK:
        reinitialize_library(module)  # pick up the token just created by the other process
        lib = _load_lib(module)
        token = lib.get_token(token_label=label)
        try:
            session = token.open(rw=True, user_pin=tmp_pin)
        except pkcs11.PKCS11Error as exc:
            msg = f"new token {label!r}: login failed: {type(exc).__name__}"
            raise HsmError(msg, "hsm_init_failed") from None
        try:
            session.set_pin(tmp_pin, pin)
        finally:
            session.close()  # logs out; the long-lived session is opened later with the real PIN
    return True
