"""The `ledgerhub` command: serve, demo, and the sub-commands of the areas (network, keys, audit, emulators,
bench, bank), each mounted from its module."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

# no local variables in tracebacks: they could hold a PIN, a token or an ERP password
app = typer.Typer(name="ledgerhub", help="Pay-per-use billing on a permissioned ledger.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (ARCHITECTURE.md); extra fields such as tx_id pass through when set."""

    FIELDS = ("tx_id", "invoice_id", "delivery_id", "message_id", "device_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage()}
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _mount_sub_apps() -> None:
    """Every sub-command's module ships with the hub: imported plainly, so a broken one fails loudly."""
    from connectors.emulators.cli import app as emulators
    from hub.audit.cli import app as audit
    from hub.bank.cli import app as bank
    from hub.bench import app as bench
    from hub.keys.cli import app as keys
    from network.cli import app as network

    for sub, name, help_text in (
        (network, "network", "Real Fabric network on this machine"),
        (keys, "keys", "HSM keys: init, list, rotate"),
        (audit, "audit", "Verify proof bundles, export audit reports"),
        (emulators, "emulators", "SAP / Oracle emulators"),
        (bench, "bench", "Benchmarks"),
        (bank, "bank", "Bank statements (camt.053 / camt.054): import"),
    ):
        app.add_typer(sub, name=name, help=help_text)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8080, help="TCP port"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    ssl_certfile: Path | None = typer.Option(None, help="TLS certificate chain (PEM); or LEDGERHUB_TLS_CERT"),
    ssl_keyfile: Path | None = typer.Option(None, help="TLS private key (PEM); or LEDGERHUB_TLS_KEY"),
    org: str | None = typer.Option(
        None, help="one hub per org: act, serve users and deliver for this MSP id only (or LEDGERHUB_ORG); "
        "unset: the all-orgs hub"),
    channel: str | None = typer.Option(
        None, help="Fabric: the one channel this hub serves (or LEDGERHUB_FABRIC_CHANNEL); unset: "
        "network.json's default channel. Refused with the embedded ledger"),
) -> None:
    """Serve the REST API with the settings from the environment (LEDGERHUB_*) or LEDGERHUB_CONFIG.
    With a certificate and key it serves HTTPS only (TLS 1.2 or newer, see hub/api/tls.py).
    With --org it is that org's hub on a consortium (ADR 0065); with --channel, that org's hub on one
    channel (ADR 0068: one hub per (org, channel), e.g. a customer on a channel of its own)."""
    import uvicorn

    from hub.api.app import create_app
    from hub.api.tls import uvicorn_tls_options
    from hub.config import load_settings

    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    from hub.ledger.channel import ChannelRefused, check_channel

    overrides = {k: v for k, v in (("org", org), ("fabric_channel", channel)) if v is not None}
    settings = load_settings(**overrides)
    tls = uvicorn_tls_options(ssl_certfile, ssl_keyfile, settings.tls)
    try:
        check_channel(settings)  # before any key, database or connection is made
        hub_app = create_app(settings)
    except ChannelRefused as exc:  # before any connection: say why, exit 2 (a configuration error)
        typer.echo(f"ledgerhub serve: {exc}", err=True)
        raise typer.Exit(2) from None
    config = uvicorn.Config(hub_app, host=host, port=port, log_level=log_level, **tls)
    uvicorn.Server(config).run()


@app.command()
def demo(
    data_dir: Path | None = typer.Option(None, help="keep the ledger and database here (default: temp)"),
    ledger: str = typer.Option(
        "embedded", help="embedded, or fabric: a real Fabric network brought up (and down) for the demo"
    ),
) -> None:
    """The whole story in one command: lease, readings, refusals, invoice."""
    from hub.demo import run_demo

    if ledger not in ("embedded", "fabric"):
        raise typer.BadParameter("embedded or fabric", param_hint="--ledger")
    result = run_demo(data_dir, ledger_kind=ledger)
    if result.invoice.get("status") != "ISSUED":
        raise typer.Exit(1)


_mount_sub_apps()

if __name__ == "__main__":
    app()
