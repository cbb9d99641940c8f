"""`ledgerhub bank import FILE`: the same import as `POST /v1/bank-statements`, in-process, with the settings
from the environment (LEDGERHUB_*). Prints the report as JSON; a refused file prints the problem and
exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy.exc import IntegrityError

from hub.config import Settings

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="camt.053 or camt.054 XML file"),
    org: str | None = typer.Option(
        None, help="whose account the statement is (default: the hub's own org, else the provider org)"),
) -> None:
    """Import a bank statement: match credits to invoices by RF reference, record them on the ledger."""
    from hub.bank.camt import StatementError
    from hub.bank.service import BankError, BankImporter
    from hub.config import load_settings
    from hub.keys import build_signers as default_signers
    from hub.ledger import open_ledger
    from hub.services import LedgerGateway, Metrics
    from hub.store.projector import Projector
    from hub.store.session import make_engine, make_sessionmaker, migrate

    settings = load_settings()
    with file.open("rb") as handle:  # read one byte past the limit: never load a huge file whole
        from hub.bank.camt import MAX_STATEMENT_BYTES

        data = handle.read(MAX_STATEMENT_BYTES + 1)
    ledger = open_ledger(settings, default_signers(settings))
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)
        db = make_sessionmaker(engine)
        metrics = Metrics()
        gateway = LedgerGateway(ledger, settings, metrics)
        projector = Projector(gateway, db, metrics)
        importer = BankImporter(gateway, db, parties=settings.parties, write_invoice=projector.write_invoice)
        try:
            report = importer.import_statement(data, org or statement_org(settings))
        except (StatementError, BankError) as exc:
            typer.echo(json.dumps({"code": exc.code, "status": exc.status, "detail": exc.detail}), err=True)
            raise typer.Exit(2) from None
        except IntegrityError:
            typer.echo(json.dumps({"code": "bank_import_conflict", "status": 409,
                                   "detail": "another import of the same entries is running; retry"}),
                       err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(report.as_dict(), indent=2))
    finally:
        engine.dispose()
        ledger.close()


def statement_org(settings: Settings) -> str:
    """Whose account a statement is when `--org` is not given: a hub of one org (`serve --org`, ADR 0065)
    holds only that org's identity, so its own org; the all-orgs hub, the provider org as before."""
    return settings.org or settings.provider_org
