"""The scheduler closes ended periods after the grace time (clock injected), once, under a DB lease."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest

from hub.scheduler import HubScheduler, Lease, ended_periods, register_job, unregister_job
from tests.helpers.api import (
    auth,
    hub_client,
    hub_settings,
    last_month,
    post_usage,
    setup_contract,
    ts,
    usage,
)
from tests.helpers.chaincode import reading

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")


def period_end(period: str) -> dt.datetime:
    y, m = int(period[:4]), int(period[5:])
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return dt.datetime(y, m, 1, tzinfo=BERLIN)


def test_ended_periods_respects_timezone_grace_and_end():
    now = dt.datetime(2026, 11, 1, 0, 30, tzinfo=BERLIN)
    grace = dt.timedelta(hours=1)
    assert ended_periods("2026-09-01", None, "Europe/Berlin", now, grace) == ["2026-09"]
    assert ended_periods("2026-09-01", None, "Europe/Berlin", now + grace, grace) == ["2026-09", "2026-10"]
    # 23:30 UTC on Oct 31 is already November in Berlin, not yet in New York
    utc = dt.datetime(2026, 10, 31, 23, 30, tzinfo=dt.UTC)
    assert ended_periods("2026-10-01", None, "Europe/Berlin", utc, dt.timedelta(0)) == ["2026-10"]
    assert ended_periods("2026-10-01", None, "America/New_York", utc, dt.timedelta(0)) == []
    # a contract that ended in August has no periods after August
    late = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    assert ended_periods("2026-07-01", "2026-08-20", "UTC", late, dt.timedelta(0)) == ["2026-07", "2026-08"]


def test_scheduler_closes_an_ended_period_after_the_grace_time_once(tmp_path, ledger, device_key):
    period, _ = last_month()
    now = [period_end(period) + dt.timedelta(minutes=30)]
    settings = hub_settings(tmp_path, close_grace_seconds=3600)
    with hub_client(settings, ledger, background=False, clock=lambda: now[0]) as c:
        setup_contract(c, device_key)
        assert (
            post_usage(c, usage(device_key, "m-1", [reading("r-1", timestamp=ts(period, 2))])).status_code
            == 202
        )
        closer = c.app.state.services.closer
        assert closer.run_once() == []  # ended 30 minutes ago: still in the grace time
        assert ledger.submits["CloseBillingPeriod"] == 0
        now[0] += dt.timedelta(hours=1)
        assert closer.run_once() == [f"inv-ctr-mri-001-{period}"]
        assert ledger.submits["CloseBillingPeriod"] == 1
        assert closer.run_once() == []  # already invoiced: not even a no-op transaction
        assert ledger.submits["CloseBillingPeriod"] == 1
        items = c.get("/v1/invoices", headers=auth("tok-customer")).json()["items"]
        assert [(i["period"], i["status"], i["total"]) for i in items] == [(period, "ISSUED", "2380.00")]
        assert 'ledgerhub_periods_closed_total{trigger="scheduler"} 1.0' in c.get("/metrics").text


def test_closing_twice_is_harmless_when_the_read_model_lags(tmp_path, ledger, device_key):
    """If the hub crashed after the close but before recording it, the next run closes again: the
    chaincode answers with the same invoice and writes nothing."""
    period, _ = last_month()
    now = [period_end(period) + dt.timedelta(hours=2)]
    with hub_client(hub_settings(tmp_path), ledger, background=False, clock=lambda: now[0]) as c:
        setup_contract(c, device_key)
        first = c.post(
            f"/v1/contracts/ctr-mri-001/periods/{period}/close", headers=auth("tok-operator")
        ).json()
        from sqlalchemy import delete

        from hub.store.models import InvoiceView

        with c.app.state.services.db.begin() as s:
            s.execute(delete(InvoiceView))
        closer = c.app.state.services.closer
        assert closer.run_once() == [first["id"]]
        again = c.get(f"/v1/invoices/{first['id']}", headers=auth("tok-auditor")).json()
        assert again["tx_id"] == first["tx_id"] and again["history"] == first["history"]


def test_background_scheduler_runs_the_close_job_and_contributed_jobs(tmp_path, ledger, device_key):
    period, _ = last_month()
    ran = threading.Event()
    register_job("test-contributed", lambda services: ran.set(), seconds=3600)
    try:
        now = [period_end(period) + dt.timedelta(hours=2)]
        settings = hub_settings(tmp_path, close_grace_seconds=60)
        # set up the contract with the scheduler off, then start a hub that runs it
        with hub_client(settings, ledger, background=False) as c:
            setup_contract(c, device_key)
        with hub_client(settings, ledger, background=True, scheduler=True, clock=lambda: now[0]) as c:
            assert ran.wait(60), "contributed job never ran"
            found = threading.Event()
            for _ in range(600):
                items = c.get("/v1/invoices", headers=auth("tok-provider")).json()["items"]
                if items:
                    found.set()
                    break
                found.wait(0.1)
            assert found.is_set(), "scheduler never closed the period"
            assert items[0]["id"] == f"inv-ctr-mri-001-{period}"
    finally:
        unregister_job("test-contributed")


def test_jobs_run_only_under_the_lease(tmp_path, ledger):
    with hub_client(hub_settings(tmp_path), ledger, background=False) as c:
        services = c.app.state.services
        sched = services.scheduler
        other = Lease(services.db, "another-hub", ttl_seconds=600)
        assert other.acquire()
        calls = []
        sched._guarded(calls.append)()
        assert calls == []  # the other hub holds the lease
        other.release()
        sched._guarded(calls.append)()
        assert calls == [services]
        assert isinstance(sched, HubScheduler)
