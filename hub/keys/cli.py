"""`ledgerhub keys init|list|rotate|disable|enable|enroll|verify-log|bench`.

Settings come from the environment (LEDGERHUB_*) like every other command; the PIN only from
LEDGERHUB_PKCS11_PIN or LEDGERHUB_PKCS11_PIN_FILE (never a command-line option: it would show in `ps`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from hub.config import Settings, load_settings

app = typer.Typer(name="keys", help="HSM keys: init, list, rotate, disable.", no_args_is_help=True)


def _fail(code: str, message: str) -> typer.Exit:
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(2)


def _manager(settings: Settings, create_missing: bool = False):  # type: ignore[no-untyped-def]
    from hub.keys import build_key_manager
    from hub.keys.pkcs11 import HsmError

    try:
        return build_key_manager(settings, create_missing=create_missing)
    except HsmError as exc:
        raise _fail(exc.code, str(exc)) from None


def _print_keys(keys: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(keys, indent=1))
        return
    for k in keys:
        state = "enabled" if k["enabled"] else "DISABLED"
        cur = next(v for v in k["versions"] if v["version"] == k["current_version"])
        typer.echo(
            f"{k['name']:<28} v{k['current_version']:<3} {state:<9} {k['backend']:<8} "
            f"{cur['key_id'][:16]}…  {cur['subject']}  (versions: {len(k['versions'])})"
        )


@app.command()
def init(as_json: bool = typer.Option(False, "--json", help="print the keys as JSON")) -> None:
    """Create the SoftHSM2 config + token under the data dir (pkcs11) and the org keys. Idempotent."""
    from hub.keys.pkcs11 import HsmError, softhsm_conf_path
    from hub.keys.softhsm import ensure_softhsm_conf, init_token

    settings = load_settings()
    if settings.signer == "pkcs11":
        pin = settings.pin()
        if not pin:
            raise _fail("hsm_no_pin", "set LEDGERHUB_PKCS11_PIN or LEDGERHUB_PKCS11_PIN_FILE")
        if "softhsm" in settings.pkcs11_module:
            conf = ensure_softhsm_conf(softhsm_conf_path(settings.data_dir).parent)
            try:
                created = init_token(conf, settings.pkcs11_token_label, pin, settings.pkcs11_module)
            except HsmError as exc:
                raise _fail(exc.code, str(exc)) from None
            typer.echo(
                f"token {settings.pkcs11_token_label!r} {'initialised' if created else 'present'} ({conf})",
                err=True,
            )
    manager = _manager(settings, create_missing=True)
    _print_keys(manager.list(), as_json)
    manager.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Keys, their versions, key ids and certificate subjects."""
    manager = _manager(load_settings())
    _print_keys(manager.list(), as_json)


def _lifecycle(action: str, name: str, as_json: bool) -> None:
    from hub.keys.manager import KeyManagerError

    manager = _manager(load_settings())
    try:
        result = getattr(manager, action)(name)
    except KeyManagerError as exc:
        raise _fail(exc.code, str(exc)) from None
    _print_keys([result], as_json)
    manager.close()


@app.command()
def rotate(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """New key version on the token + new certificate; it becomes current. Old versions still verify."""
    _lifecycle("rotate", name, as_json)


@app.command()
def disable(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The key refuses to sign until `enable` (verification keeps working)."""
    _lifecycle("disable", name, as_json)


@app.command()
def enable(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Undo `disable`."""
    _lifecycle("enable", name, as_json)


@app.command()
def enroll(
    name: str,
    ca_cert: Path = typer.Option(..., exists=True, help="org CA certificate (cryptogen: ca/ca.*-cert.pem)"),
    ca_key: Path = typer.Option(..., exists=True, help="org CA private key file (cryptogen: ca/priv_sk)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-issue the key's certificate from the Fabric org CA (NodeOU client/peer), for a real network."""
    from hub.keys.manager import KeyManagerError

    manager = _manager(load_settings())
    try:
        result = manager.enroll_external(name, ca_cert, ca_key)
    except (KeyManagerError, ValueError) as exc:
        raise _fail(getattr(exc, "code", "bad_ca"), str(exc)) from None
    _print_keys([result], as_json)


@app.command("verify-log")
def verify_log_cmd() -> None:
    """Check the key audit log's hash chain; exit 1 and say where if it is broken."""
    from hub.keys.audit_log import verify_log

    settings = load_settings()
    check = verify_log(settings.data_dir / "keys" / "audit.jsonl")
    typer.echo(json.dumps({"ok": check.ok, "entries": check.entries, "problems": check.problems,
                           "torn_tail": check.torn_tail}))
    if not check.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    count: int = typer.Option(5000, help="signatures per signer"),
    threads: int = typer.Option(1, help="signing threads"),
) -> None:
    """Signatures per second: PKCS#11 (SoftHSM) vs software, same run. A benchmark, not a test."""
    from hub.keys.bench import main

    sys.exit(main(["--count", str(count), "--threads", str(threads)]))


if __name__ == "__main__":
    app()
