"""The hub's database on SQLite and PostgreSQL: migrations, the scheduler lease, the projector checkpoint."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import inspect, select

from hub.config import Settings
from hub.scheduler import Lease
from hub.services import LedgerGateway, Metrics
from hub.store.models import ContractView, EventCheckpoint, IdempotencyRecord, InvoiceView
from hub.store.projector import Projector
from hub.store.session import alembic_config, is_migrated, make_engine, make_sessionmaker, migrate
from tests.helpers.api import ControlledLedger, embedded_ledger, last_month, ts
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    make_device_key,
    reading,
    sample_asset,
    sample_contract,
    signed_message,
)

pytestmark = pytest.mark.integration


def test_migrations_run_to_every_head_and_are_idempotent(database_url):
    engine = make_engine(database_url)
    try:
        assert not is_migrated(engine)
        migrate(engine)
        assert is_migrated(engine)
        migrate(engine)  # a second start-up changes nothing
        tables = set(inspect(engine).get_table_names())
        assert {
            "idempotency_record",
            "contract_view",
            "invoice_view",
            "event_checkpoint",
            "scheduler_lease",
        } <= tables
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(alembic_config(engine))
        assert "0001_core" in {rev.revision for rev in script.walk_revisions()}
        assert script.get_revision("0001_core").down_revision is None
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_schema_the_models_declare(database_url):
    """A model changed without its Alembic migration (or the reverse) shows up here, on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hub.store.base import Base
    from hub.store.session import import_models

    engine = make_engine(database_url)
    try:
        migrate(engine)
        import_models()
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        columns = {c["name"] for c in inspect(engine).get_columns("alert_rule")}
        assert "usual_usage" in columns  # revision 0007_portal_usual_usage
    finally:
        engine.dispose()


def test_idempotency_record_is_unique_per_device_and_message(database_url):
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    row = dict(device_id="d", message_id="m", request_digest="x" * 64, status_code=202, body="{}")
    with db.begin() as s:
        s.add(IdempotencyRecord(**row))
    with pytest.raises(IntegrityError), db.begin() as s:
        s.add(IdempotencyRecord(**row))
    with db.begin() as s:
        s.add(IdempotencyRecord(**{**row, "device_id": "other"}))
    engine.dispose()


def test_lease_one_holder_at_a_time(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    now = [dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)]
    a = Lease(db, "hub-a", ttl_seconds=60, clock=lambda: now[0])
    b = Lease(db, "hub-b", ttl_seconds=60, clock=lambda: now[0])
    assert a.acquire() is True
    assert b.acquire() is False
    now[0] += dt.timedelta(seconds=30)
    assert a.acquire() is True  # renewal by the holder
    now[0] += dt.timedelta(seconds=59)
    assert b.acquire() is False  # renewed 59 s ago, still valid
    now[0] += dt.timedelta(seconds=2)
    assert b.acquire() is True  # expired: taken over
    assert a.acquire() is False
    b.release()
    assert a.acquire() is True
    engine.dispose()


def test_lease_race_has_exactly_one_winner(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def contender(i: int) -> None:
        lease = Lease(db, f"hub-{i}", ttl_seconds=300)
        start.wait()
        got = lease.acquire()
        with lock:
            results.append(got)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    engine.dispose()


def test_projector_rebuilds_read_models_from_the_event_stream(tmp_path, database_url):
    """A fresh database catches up from block 0; the checkpoint makes a restart resume, not re-apply."""
    led = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    try:
        key = make_device_key("proj")
        period, start = last_month()
        led.submit("RegisterAsset", [_j(sample_asset(key))], as_org=PROVIDER)
        led.submit("ProposeContract", [_j(sample_contract(start=start))], as_org=PROVIDER)
        led.submit("AcceptContract", [_j({"contract_id": "ctr-mri-001"})], as_org=CUSTOMER)
        message = signed_message(key, [reading("r-1", timestamp=ts(period, 2))])
        led.submit("RecordUsage", [_j({"messages": [message]})], as_org=PROVIDER)
        led.submit(
            "CloseBillingPeriod", [_j({"contract_id": "ctr-mri-001", "period": period})], as_org=PROVIDER
        )

        engine = make_engine(database_url)
        migrate(engine)
        db = make_sessionmaker(engine)
        metrics = Metrics()
        projector = Projector(LedgerGateway(led, Settings(), metrics), db, metrics)
        applied = projector.catch_up(timeout=0.2)
        # RegisterAsset emits no event: ContractProposed, ContractActivated, UsageRecorded, InvoiceIssued
        assert applied == 4
        with db() as s:
            contract = s.get(ContractView, "ctr-mri-001")
            invoice = s.get(InvoiceView, f"inv-ctr-mri-001-{period}")
            checkpoint = s.get(EventCheckpoint, "read-models")
        assert contract.status == "ACTIVE" and contract.customer == CUSTOMER
        assert invoice.status == "ISSUED" and invoice.total == "2380.00"
        assert invoice.block == led.tx(invoice.tx_id).block
        assert checkpoint.block == invoice.block
        assert projector.catch_up(timeout=0.1) == 0  # nothing new, nothing re-applied

        led.submit("Dispute", [_j({"invoice_id": invoice.id, "reason": "x"})], as_org=CUSTOMER)
        assert projector.catch_up(timeout=0.2) == 1
        with db() as s:
            assert s.scalar(select(InvoiceView.status).where(InvoiceView.id == invoice.id)) == "DISPUTED"
        engine.dispose()
    finally:
        led.close()


def _j(value: object) -> str:
    import json

    return json.dumps(value)


def test_one_holders_concurrent_jobs_all_get_the_lease(database_url):
    """The holder's jobs start together on a fresh database: the INSERT race turns none of them away."""
    engine = make_engine(database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    lease = Lease(db, "hub-1", ttl_seconds=300)
    start = threading.Barrier(6)
    results: list[bool] = []

    def job() -> None:
        start.wait()
        results.append(lease.acquire())

    threads = [threading.Thread(target=job) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 6
    assert Lease(db, "hub-2", ttl_seconds=300).acquire() is False
    engine.dispose()
