"""The test run's PostgreSQL server: the throwaway cluster of hub/bench/pgserver.py (shared with the
plain-database meter of `ledgerhub bench`), fsync off."""

from hub.bench.pgserver import PostgresServer, pg_bin, running_postgres

__all__ = ["PostgresServer", "pg_bin", "running_postgres"]
