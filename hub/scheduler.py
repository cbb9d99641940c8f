"""Scheduled jobs, one runner at a time across hub processes.

The built-in job closes billing periods: for every ACTIVE contract, each calendar month (in the contract's
timezone) that ended more than `close_grace_seconds` ago and has no invoice yet gets `CloseBillingPeriod`,
as the provider. A hub of one org (ADR 0065) closes only the contracts its org provides.
Closing is idempotent on the ledger (a second close returns the same invoice and writes nothing), so a
crash between the close and the bookkeeping simply closes again.

Several hub replicas may run the scheduler; a lease row in the database decides which one works. It is
taken with one atomic `UPDATE ... WHERE expires_at < now OR holder = me`, so two processes can never both
believe they hold it. Other areas add their jobs (delivery retries, reconciliation, key expiry) with
`register_job` before start-up, or `HubScheduler.add_job` afterwards; every job runs under the lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chaincode.periods import local_midnight, next_period, period_bounds
from hub.billing.client import ContractClient
from hub.ledger.base import ChaincodeRejected, LedgerError
from hub.services import LedgerGateway, Metrics
from hub.store.models import ContractView, InvoiceView, SchedulerLease
from hub.store.projector import Projector

log = logging.getLogger("ledgerhub.scheduler")
Clock = Callable[[], dt.datetime]
LEASE_NAME = "scheduler"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class JobSpec:
    """A job another area contributes: `func(services)` every `seconds`."""

    id: str
    func: Callable[[Any], None]
    seconds: float


_REGISTERED: list[JobSpec] = []


def register_job(job_id: str, func: Callable[[Any], None], seconds: float) -> None:
    """Add a job to every scheduler started after this call (idempotent per id)."""
    if all(spec.id != job_id for spec in _REGISTERED):
        _REGISTERED.append(JobSpec(job_id, func, seconds))


def unregister_job(job_id: str) -> None:
    _REGISTERED[:] = [spec for spec in _REGISTERED if spec.id != job_id]


def registered_jobs() -> list[JobSpec]:
    return list(_REGISTERED)


# --- the lease -------------------------------------------------------------------------------------


class Lease:
    def __init__(self, db: sessionmaker[Session], holder: str, ttl_seconds: float = 60.0,
                 clock: Clock = utcnow, name: str = LEASE_NAME) -> None:
        self.db = db
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.clock = clock
        self.name = name
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Take or renew the lease; True when this holder has it until now + ttl. Jobs of one process
        call this concurrently, and a first start races on creating the row: whoever loses the INSERT
        goes back to the atomic UPDATE, which then decides (so the holder's own jobs all get True)."""
        now = _utc(self.clock())
        with self._lock:
            for _ in range(2):
                with self.db.begin() as session:
                    result = session.execute(
                        update(SchedulerLease)
                        .where(SchedulerLease.name == self.name)
                        .where((SchedulerLease.expires_at < now) | (SchedulerLease.holder == self.holder))
                        .values(holder=self.holder, expires_at=now + self.ttl)
                    )
                    if result.rowcount == 1:
                        return True
                    row = select(SchedulerLease.name).where(SchedulerLease.name == self.name)
                    exists = session.scalar(row)
                if exists is not None:
                    return False
                try:
                    with self.db.begin() as session:
                        session.add(SchedulerLease(name=self.name, holder=self.holder,
                                                   expires_at=now + self.ttl))
                except IntegrityError:
                    continue  # created meanwhile: the UPDATE decides
                return True
        return False

    def release(self) -> None:
        with self.db.begin() as session:
            session.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
                .values(expires_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
            )


def _utc(moment: dt.datetime) -> dt.datetime:
    # always UTC: SQLite stores the wall time without an offset, PostgreSQL a timestamptz; both compare alike
    return moment.astimezone(dt.UTC)


# --- periods ---------------------------------------------------------------------------------------


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def ended_periods(start: str, end: str | None, timezone: str, now: dt.datetime,
                  grace: dt.timedelta) -> list[str]:
    """Periods (YYYY-MM) of a contract that ended at least `grace` before `now`, in the contract's zone.
    A period ends where the chaincode says (`chaincode.periods`: the zone's first instant of the next 1st,
    DST-safe, from the bundled tzdata); the grace is elapsed time, added in UTC."""
    first = dt.date.fromisoformat(start)
    last = dt.date.fromisoformat(end) if end else None
    last_period = f"{last.year:04d}-{last.month:02d}" if last is not None else None
    period = f"{first.year:04d}-{first.month:02d}"
    periods = []
    while True:
        period_end = period_bounds(period, timezone)[1]
        if last is not None and period == last_period:  # the final invoice: due once the contract has ended
            period_end = min(period_end, local_midnight(last + dt.timedelta(days=1), timezone))  # (ADR 0046)
        if period_end + grace > now:
            break
        periods.append(period)
        if last_period is not None and period >= last_period:
            break
        period = next_period(period)
    return periods


class PeriodCloser:
    def __init__(self, gateway: LedgerGateway | ContractClient, db: sessionmaker[Session],
                 projector: Projector, metrics: Metrics, *, grace_seconds: int,
                 clock: Clock = utcnow) -> None:
        self.client = ContractClient.of(gateway)
        # one hub per org (ADR 0065): the provider's hub closes its contracts' periods; others close none
        self.org = None if self.client.orgs is None else self.client.orgs.org
        self.db = db
        self.projector = projector
        self.metrics = metrics
        self.grace = dt.timedelta(seconds=grace_seconds)
        self.clock = clock

    def due(self) -> list[tuple[ContractView, str]]:
        now = self.clock()
        with self.db() as session:
            contracts = session.scalars(select(ContractView).where(ContractView.status == "ACTIVE")).all()
            invoiced = set(session.scalars(select(InvoiceView.id)).all())
        due = []
        for contract in contracts:
            if self.org is not None and contract.provider != self.org:
                continue
            for period in ended_periods(contract.start, contract.end, contract.timezone, now, self.grace):
                if ContractClient.invoice_id(contract.id, period) not in invoiced:
                    due.append((contract, period))
        return due

    def run_once(self) -> list[str]:
        """Close every due period; returns the invoice ids issued (or found already issued)."""
        issued = []
        for contract, period in self.due():
            try:
                invoice = close_period(self.client, self.projector, contract.id, period, contract.provider)
            except ChaincodeRejected as exc:
                log.warning("closing %s %s refused: %s", contract.id, period, exc.code)
                continue
            except LedgerError:
                log.warning("closing %s %s failed; next run retries", contract.id, period, exc_info=True)
                continue
            self.metrics.invoices_closed.labels("scheduler").inc()
            issued.append(invoice["id"])
        return issued


def close_period(gateway: LedgerGateway | ContractClient, projector: Projector, contract_id: str, period: str,
                 as_org: str) -> dict[str, Any]:
    """CloseBillingPeriod, then the invoice as stored, written through to the read model."""
    client = ContractClient.of(gateway)
    closed = client.close_billing_period(contract_id, period, as_org=as_org)
    invoice = client.get_invoice(closed.id, as_org=as_org)
    record = dict(invoice.raw)
    commit = closed.commit
    if commit is not None and invoice.tx_id == commit.tx_id:  # this close issued it (a repeat is a no-op tx)
        record["block"] = commit.block
    projector.write_invoice(record)
    return record


# --- the scheduler -------------------------------------------------------------------------------


class HubScheduler:
    def __init__(self, services: Any, closer: PeriodCloser, lease: Lease,
                 close_every_seconds: float = 60.0) -> None:
        self.services = services
        self.closer = closer
        self.lease = lease
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.scheduler.add_job(self._guarded(lambda _s: self.closer.run_once()), "interval",
                               seconds=close_every_seconds, id="close-periods", max_instances=1,
                               coalesce=True, next_run_time=utcnow(), misfire_grace_time=None)

    @staticmethod
    def default_holder() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def add_job(self, job_id: str, func: Callable[[Any], None], seconds: float) -> None:
        # first run at start-up: retries and reconciliation should not wait a whole interval after a restart
        self.scheduler.add_job(self._guarded(func), "interval", seconds=seconds, id=job_id,
                               max_instances=1, coalesce=True, replace_existing=True, next_run_time=utcnow(),
                               misfire_grace_time=None)

    def _guarded(self, func: Callable[[Any], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                if not self.lease.acquire():
                    return
                func(self.services)
            except Exception:
                log.exception("scheduled job failed")

        return run

    def start(self) -> None:
        """Start, with every job registered so far (areas wired after the app was built included)."""
        for spec in registered_jobs():
            if self.scheduler.get_job(spec.id) is None:
                self.add_job(spec.id, spec.func, spec.seconds)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        try:
            self.lease.release()
        except Exception:
            log.warning("could not release the scheduler lease", exc_info=True)
