"""`ledgerhub audit`: verify proof bundles offline, export a period's audit files.

`verify FILE` needs nothing but the file: exit 0 when every check passes, 1 when any fails (each failure
printed with the part it concerns), 2 when the file cannot be read as a bundle at all.
`export` takes its bundle from a file (`--bundle`, offline), from a running hub (`--url` and `--token`,
GET /v1/invoices/{id}/proof), or else from the ledger the settings name (which must not be open in
another process: the embedded ledger allows one opener).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from hub.audit.exports import FORMATS, check_scope, export_files
from hub.audit.verify import verify_bundle
from hub.billing.client import ContractClient
from hub.config import Settings

app = typer.Typer(help="Verify proof bundles offline, export audit reports.", no_args_is_help=True)

EXIT_FAILED = 1
EXIT_UNREADABLE = 2
PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        typer.echo(f"cannot read {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    except ValueError as exc:
        typer.echo(f"{path} is not JSON: {exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc


@app.command()
def verify(
    file: Path = typer.Argument(..., help="proof bundle (JSON) from GET /v1/invoices/{id}/proof"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    genesis: str | None = typer.Option(
        None, "--genesis", help="expected genesis block hash (hex), obtained out of band, to pin the network"
    ),
) -> None:
    """Check a proof bundle offline: signatures, certificates, hash chain, readings and amounts."""
    report = verify_bundle(_load(file), genesis_hash=genesis)
    typer.echo(json.dumps(report.to_json(), indent=2) if as_json else report.summary())
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _bundle_from_ledger(invoice_id: str) -> dict[str, Any]:
    from hub.audit.proof import build_bundle
    from hub.config import load_settings
    from hub.keys import build_signers as default_signers
    from hub.ledger import open_ledger

    settings = load_settings()
    ledger = open_ledger(settings, default_signers(settings))
    try:
        return build_bundle(ledger, invoice_id, as_org=bundle_org(settings))
    finally:
        ledger.close()


def _bundle_from_api(url: str, token: str, invoice_id: str) -> dict[str, Any]:
    import httpx

    try:
        r = httpx.get(  # the id is one path segment, whatever the contract id holds
            f"{url.rstrip('/')}/v1/invoices/{quote(invoice_id, safe='')}/proof",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
    except httpx.HTTPError as exc:  # unreachable hub, bad URL: a message, not a traceback
        typer.echo(f"cannot reach the hub at {url}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    if r.status_code != 200:
        typer.echo(f"hub answered {r.status_code}: {r.text[:500]}", err=True)
        raise typer.Exit(EXIT_FAILED)
    return r.json()


@app.command()
def export(
    contract: str = typer.Option(..., "--contract", help="contract id"),
    period: str = typer.Option(..., "--period", help="billing period YYYY-MM"),
    fmt: str = typer.Option("csv", "--format", help="csv (readings and invoice lines) or pdf (audit report)"),
    out: Path = typer.Option(Path("."), "--out", help="directory for the files"),
    bundle: Path | None = typer.Option(None, "--bundle", help="export from this proof bundle (offline)"),
    url: str | None = typer.Option(None, "--url", help="fetch the proof from a running hub at this URL"),
    token: str | None = typer.Option(
        None, "--token", envvar="LEDGERHUB_TOKEN", help="bearer token for --url"
    ),
) -> None:
    """Export the audit files of one contract's period (invoice inv-{contract}-{period})."""
    if fmt not in FORMATS:
        typer.echo(f"--format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(EXIT_UNREADABLE)
    if not PERIOD.fullmatch(period):
        typer.echo(f"--period must be YYYY-MM, not {period!r}", err=True)
        raise typer.Exit(EXIT_UNREADABLE)
    invoice_id = ContractClient.invoice_id(contract, period)  # the id CloseBillingPeriod gives it
    if bundle is not None:
        data = _load(bundle)
    elif url is not None:
        if not token:
            typer.echo("--url needs --token (or LEDGERHUB_TOKEN)", err=True)
            raise typer.Exit(EXIT_UNREADABLE)
        data = _bundle_from_api(url, token, invoice_id)
    else:
        data = _bundle_from_ledger(invoice_id)
    try:
        check_scope(data, contract, period)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    report = verify_bundle(data)
    for path in export_files(data, fmt, out, report):
        typer.echo(str(path))
    if not report.ok:
        typer.echo(f"warning: the proof bundle does NOT verify ({len(report.failures)} problems)", err=True)


def bundle_org(settings: Settings) -> str:
    """The org a bundle is read as: the hub's own org on a hub of one org (it holds no other identity, ADR
    0065), the auditor org on the all-orgs hub as before."""
    return settings.org or settings.auditor_org
