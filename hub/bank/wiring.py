"""The bank area's services on an app, built once on first use: the statement importer, the SEPA
collector and the money jobs (progressive billing, low balances, refunds), and their scheduler jobs.
`services` is the app's `hub.api.deps.Services` (typed loosely: this module sits below the API layer)."""

from __future__ import annotations

from typing import Any

from hub.bank.money_jobs import MoneyJobs
from hub.bank.sepa import SepaCollector
from hub.bank.service import BankImporter
from hub.portal.wiring import webhook_enqueue
from hub.scheduler import register_job


def importer(services: Any) -> BankImporter:
    if services.bank is None:
        projector = services.projector
        services.bank = BankImporter(services.gateway, services.db, parties=services.settings.parties,
                                     enqueue=webhook_enqueue(services),
                                     write_invoice=projector.write_invoice if projector else None)
    return services.bank


def collector(services: Any) -> SepaCollector:
    if services.sepa is None:
        settings = services.settings
        services.sepa = SepaCollector(services.gateway, services.db, parties=settings.parties,
                                      directory=settings.sepa_drop_dir or settings.data_dir / "sepa-drop")
    return services.sepa


def money_jobs(services: Any) -> MoneyJobs:
    """Progressive billing, low prepaid balances (alert, top-up collection) and refunds at contract end."""
    if services.money is None:
        settings = services.settings
        bank = importer(services)
        services.money = MoneyJobs(services.gateway, services.db, parties=settings.parties,
                                   directory=settings.sepa_drop_dir or settings.data_dir / "sepa-drop",
                                   enqueue=bank.enqueue, write_invoice=bank.write_invoice)
    return services.money


register_job("sepa-collections", lambda services: collector(services).run_once(), seconds=30)
register_job("money", lambda services: money_jobs(services).run_once(), seconds=15)
