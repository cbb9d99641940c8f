"""Engines, sessions and migrations.

Migrations run programmatically at start-up with `upgrade heads`: every area owns an Alembic branch off
`0001_core`, so there is more than one head by design. Readiness (`/readyz`) asks `is_migrated`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Areas may keep their revisions in their own package; they are found here when present.
AREA_VERSION_DIRS = ("hub.delivery", "hub.keys", "hub.audit", "hub.portal")
MODEL_MODULES = ("hub.store.models", "hub.delivery.models", "hub.keys.models", "hub.audit.models",
                 "hub.portal.models", "hub.bank.models")


def import_models() -> list[str]:
    """Import every area's model module that exists, so all tables are on `Base.metadata`."""
    loaded = []
    for name in MODEL_MODULES:
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        loaded.append(name)
    return loaded


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
    locations = [str(MIGRATIONS_DIR / "versions")]
    for package in AREA_VERSION_DIRS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for base in spec.submodule_search_locations:
            candidate = Path(base) / "migrations" / "versions"
            if candidate.is_dir():
                locations.append(str(candidate))
    return locations


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
