"""The HSM PIN appears in no log line, no exception, no repr and no file the key area writes.

Everything the key area does runs here with logging at DEBUG: in-process (caplog) and in subprocesses
that log to files (CLI init/rotate, a wrong PIN); then every captured line and every file written is
searched for the PIN (and the wrong PIN).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.keys.documents import sign_invoice_json, sign_xml
from hub.keys.manager import KeyManagerError
from hub.keys.signer import sign_bytes

pytestmark = [pytest.mark.integration, pytest.mark.hsm]

ROOT = Path(__file__).resolve().parents[2]

CLI_WITH_DEBUG_LOG = r"""
import logging, sys
logging.basicConfig(level=logging.DEBUG, filename=sys.argv[1],
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")
from hub.cli import app
try:
    rc = app(sys.argv[2:], standalone_mode=False)  # a typer.Exit comes back as its code here
except SystemExit as exc:
    rc = exc.code
except Exception as exc:
    logging.getLogger("test").exception("command failed: %r", exc)
    rc = 1
sys.exit(rc if isinstance(rc, int) else 0)
"""


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_pin_is_never_logged_or_written(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, hsm_env, hsm_manager, pkcs11_settings, pkcs11_signers,
) -> None:
    caplog.set_level(logging.DEBUG)
    pin = hsm_env.pin
    wrong = "wrong-" + pin[::-1]
    outputs: list[str] = []

    # in-process: everything the manager and signers do
    for signer in pkcs11_signers.values():
        sign_bytes(signer, b"endorse")
    doc = hsm_manager.signer("documents-ProviderMSP", "invoice-document")
    sign_invoice_json({"invoice_id": "i-1", "total": "1.00"}, doc)
    sign_xml(b"<doc><a>1</a></doc>", doc)
    hsm_manager.rotate("client-ProviderMSP")
    hsm_manager.disable("client-ProviderMSP")
    with pytest.raises(KeyManagerError) as refused:  # the refusal's message and repr are scanned too
        sign_bytes(hsm_manager.signer("client-ProviderMSP"), b"x")
    assert refused.value.code == "key_disabled"
    outputs += [str(refused.value), repr(refused.value)]
    hsm_manager.enable("client-ProviderMSP")
    hsm_manager.flush()
    outputs += [repr(hsm_manager), repr(hsm_manager.backend.token), repr(pkcs11_signers["ProviderMSP"]),
                repr(pkcs11_settings), str(pkcs11_settings.model_dump())]

    # subprocesses: CLI init + rotate with a DEBUG log file, then a wrong PIN
    data_dir = tmp_path / "cli-data"
    log_file = tmp_path / "cli-debug.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHUB_", "SOFTHSM2_"))}
    env.update(LEDGERHUB_DATA_DIR=str(data_dir), LEDGERHUB_SIGNER="pkcs11", LEDGERHUB_PKCS11_PIN=pin,
               LEDGERHUB_PKCS11_TOKEN_LABEL="leak-check")
    for args, the_pin in ((["keys", "init"], pin), (["keys", "rotate", "endorser-ProviderMSP"], pin),
                          (["keys", "rotate", "endorser-CustomerMSP"], wrong)):
        proc = subprocess.run([sys.executable, "-c", CLI_WITH_DEBUG_LOG, str(log_file), *args],
                              env={**env, "LEDGERHUB_PKCS11_PIN": the_pin}, cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=False)
        outputs += [proc.stdout, proc.stderr]
        # the runs with the right PIN did their work (else the scan below would prove little)
        right_pin = the_pin == pin
        assert (proc.returncode == 0) is right_pin, (args, proc.returncode, proc.stderr[-2000:])
    assert "PIN rejected" in outputs[-1] + log_file.read_text()  # the wrong PIN run did fail, clearly

    # the scan
    texts = {"caplog": caplog.text, "outputs": "\n".join(outputs)}
    for i, r in enumerate(caplog.records):
        texts[f"record {i} {r.name}"] = r.getMessage() + repr(r.args) + str(r.exc_text)
    written = [*_files(data_dir), log_file, *_files(hsm_manager.dir), *_files(pkcs11_settings.data_dir),
               *_files(hsm_env.base)]
    assert len(written) > 10 and log_file.stat().st_size > 0
    for name, text in texts.items():
        assert pin not in text and wrong not in text, name
    for path in written:
        data = path.read_bytes()
        assert pin.encode() not in data and wrong.encode() not in data, path
    assert hashlib.sha256(pin.encode()).hexdigest() not in "\n".join(texts.values())
