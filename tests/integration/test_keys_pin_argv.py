"""No PIN on any command line while a SoftHSM2 token is initialised (`ledgerhub keys init`, the test
token, the benchmarks all go through `hub.keys.softhsm.init_token`).

A command line is world-readable (`/proc/<pid>/cmdline`, `ps`). The initialisation runs in a fresh
process that records every child it starts (a `subprocess.Popen` audit hook: argv and environment) and
finds `softhsm2-util` through a recorder script first on PATH that logs its own argv before running the real
one (so a grandchild is seen too). Then every recorded argv is searched for the user PIN and the SO PIN the
init wrote to its 0600 file, and the token is used with the PIN to show the init really happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.keys.pkcs11 import SOFTHSM_MODULE

pytestmark = [pytest.mark.integration, pytest.mark.hsm]
ROOT = Path(__file__).resolve().parents[2]
LABEL = "argv-check"

RECORDER = """#!/bin/sh
printf '%s\\0' "$0" "$@" >> "{log}"
printf '\\n' >> "{log}"
exec "{real}" "$@"
"""

INIT = r"""
import json, subprocess, sys
from pathlib import Path

seen = []

def hook(event, args):
    if event == "subprocess.Popen":
        executable, argv, cwd, env = args
        seen.append({"argv": [str(a) for a in argv], "env": dict(env or {})})

sys.addaudithook(hook)
from hub.keys.softhsm import ensure_softhsm_conf, init_token
from hub.keys.pkcs11 import token_session
base, pin, label, module, out = sys.argv[1:6]  # this test's own argv carries no PIN either: see below
pin = Path(pin).read_text()
conf = ensure_softhsm_conf(Path(base))
created = init_token(conf, label, pin, module)
token = token_session(module, label, pin)
key = token.generate_ec_key("argv-check-key")
signature = key.sign(b"\x00" * 32)
Path(out).write_text(json.dumps({"created": created, "children": seen, "signed": len(signature) > 0}))
"""


@pytest.mark.skipif(not Path(SOFTHSM_MODULE).exists() or shutil.which("softhsm2-util") is None,
                    reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_token_init_puts_no_pin_on_any_command_line(tmp_path: Path) -> None:
    pin = "argv-pin-5f3c9a7e21"
    pin_file = tmp_path / "pin"
    pin_file.write_text(pin)
    bin_dir, log = tmp_path / "bin", tmp_path / "softhsm2-util.argv"
    bin_dir.mkdir()
    recorder = bin_dir / "softhsm2-util"
    recorder.write_text(RECORDER.format(log=log, real=shutil.which("softhsm2-util")))
    recorder.chmod(0o755)
    base, out = tmp_path / "hsm", tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHUB_", "SOFTHSM2_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               LEDGERHUB_PKCS11_PIN=pin)  # as `ledgerhub keys init` runs: the PIN in its environment
    done = subprocess.run([sys.executable, "-c", INIT, str(base), str(pin_file), LABEL, SOFTHSM_MODULE,
                           str(out)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["created"] and result["signed"]
    so_pin = (base / f"so-pin-{LABEL}").read_text()
    assert len(so_pin) >= 8

    argvs = [child["argv"] for child in result["children"]]
    argvs += [line.split("\0") for line in log.read_text().split("\0\n") if line]
    assert any(Path(argv[0]).name == "softhsm2-util" for argv in argvs)  # the recorder saw the calls
    shown = [argv for argv in argvs if any(pin in a or so_pin in a for a in argv)]
    assert shown == [], f"a PIN on a command line: {shown}"
    # nor in a child's environment (readable by the same user in /proc/<pid>/environ)
    assert not [c for c in result["children"] if any(pin in v or so_pin in v for v in c["env"].values())]


@pytest.mark.skipif(not Path(SOFTHSM_MODULE).exists() or shutil.which("softhsm2-util") is None,
                    reason="SoftHSM2 is not installed (apt-get install softhsm2)")
def test_a_failed_init_says_why_and_names_no_pin(tmp_path: Path) -> None:
    from hub.keys.pkcs11 import HsmError
    from hub.keys.softhsm import ensure_softhsm_conf, init_token

    conf = ensure_softhsm_conf(tmp_path / "hsm", set_env=False)
    with pytest.raises(HsmError) as short:  # SoftHSM wants 4 to 255 characters
        init_token(conf, "short-pin", "abc", SOFTHSM_MODULE)
    assert short.value.code == "hsm_init_failed" and "CKR_PIN_LEN_RANGE" in str(short.value)
    assert "abc" not in str(short.value).replace("short-pin", "")
    with pytest.raises(HsmError) as long_label:
        init_token(conf, "x" * 33, "a-good-pin-1234", SOFTHSM_MODULE)
    assert "1 to 32 bytes" in str(long_label.value) and "a-good-pin-1234" not in str(long_label.value)
