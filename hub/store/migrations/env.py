"""Alembic environment: runs on the engine the hub hands over (config.attributes["engine"]), or on the
URL from the settings when invoked from the alembic command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from hub.config import load_settings
from hub.store.base import Base
from hub.store.session import import_models, make_engine

import_models()
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine
    return make_engine(load_settings().effective_database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
