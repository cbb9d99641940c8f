"""The database fixture itself: both backends accept connections and keep tests apart."""

import pytest
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_database_url_is_usable_and_empty(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(text("INSERT INTO probe (id, v) VALUES (1, 'x')"))
        assert conn.execute(text("SELECT v FROM probe")).scalar_one() == "x"
    if database_url.startswith("postgresql"):
        with engine.connect() as conn:
            assert conn.execute(text("SHOW server_version")).scalar_one().startswith(("15", "16"))
    engine.dispose()
