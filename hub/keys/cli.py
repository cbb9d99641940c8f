"""`ledgerhub keys init|list|rotate|disable|enable|enroll|verify-log|bench`.

Settings come from the environment (LEDGERHUB_*) like every other command; the PIN only from
LEDGERHUB_PKCS11_PIN or LEDGERHUB_PKCS11_PIN_FILE (never a command-line option: it would show in `ps`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from hub.config import Settings, load_settings

# no locals in tracebacks: a local could be the PIN
app = typer.Typer(name="keys", help="HSM keys: init, list, rotate, disable.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)


def _fail(code: str, message: str) -> typer.Exit:
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """HSM and key-manager refusals become one line `error [code]: message` and exit code 2."""
    from hub.keys.manager import KeyManagerError
    from hub.keys.pkcs11 import HsmError

    try:
        yield
    except (HsmError, KeyManagerError) as exc:
        raise _fail(exc.code, str(exc)) from None


def _manager(settings: Settings, create_missing: bool = False):  # type: ignore[no-untyped-def]
    from hub.keys import build_key_manager

    with _errors():
        return build_key_manager(settings, create_missing=create_missing)


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
    with _errors():
        _print_keys(manager.list(), as_json)
    manager.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Keys, their versions, key ids and certificate subjects."""
    manager = _manager(load_settings())
    with _errors():
        _print_keys(manager.list(), as_json)


def _lifecycle(action: str, name: str, as_json: bool) -> None:
    manager = _manager(load_settings())
    with _errors():
        result = getattr(manager, action)(name)
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
    manager = _manager(load_settings())
    try:
        with _errors():
            result = manager.enroll_external(name, ca_cert, ca_key)
    except ValueError as exc:
        raise _fail("bad_ca", str(exc)) from None
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
