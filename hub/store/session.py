"""Engines, sessions and migrations.

Migrations run programmatically at start-up with `upgrade heads`: every area owns an Alembic branch off
`0001_core`, so there is more than one head by design. Readiness (`/readyz`) asks `is_migrated`.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Every area's revisions live in migrations/versions, each area on its own Alembic branch off 0001_core.
VERSIONS_DIR = MIGRATIONS_DIR / "versions"


def import_models() -> list[str]:
    """Import every area's model module (all of them ship with the hub), so all tables are on `Base.metadata`.
    A broken model module raises here instead of silently leaving its tables out of the schema check."""
    # each import registers that area's tables on Base.metadata
    import hub.bank.models
    import hub.delivery.models
    import hub.portal.models
    import hub.store.models  # noqa: F401

    return ["hub.store.models", "hub.delivery.models", "hub.portal.models", "hub.bank.models"]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL: readers do not block the writer; several threads (API, batcher, projector) share the file
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def version_locations() -> list[str]:
    return [str(VERSIONS_DIR)]


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # alembic splits this option on the separator; os.pathsep keeps paths with spaces intact
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(version_locations()))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """`alembic upgrade heads` on this engine."""
    command.upgrade(alembic_config(engine), "heads")


def is_migrated(engine: Engine) -> bool:
    """True when the database is at every head of every branch."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(script.get_heads())
