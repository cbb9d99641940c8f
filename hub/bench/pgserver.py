"""A throwaway PostgreSQL server: initdb into a temp dir, start on a free loopback port, stop at the end.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.

Used by the test suite (tests/helpers/postgres.py: a fresh database per test, `CREATE DATABASE` is cheap,
fsync off for speed) and by the plain-database meter of `ledgerhub bench` (hub/bench/plaindb.py), which
runs it `durable`: PostgreSQL's own defaults, fsync and synchronous commit on, as a metering service
would run it and as the embedded ledger writes (SQLite `synchronous=FULL`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def pg_bin() -> Path | None:
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresServer:
    def __init__(self, base: Path, port: int, bindir: Path, *, durable: bool = False) -> None:
        self.base = base
        self.durable = durable
        self.port = port
        self.bindir = bindir
        self.datadir = base / "data"
        self.user = "ledgerhub"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            _as_server_user(
                [str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", self.user,
                 "--no-sync", "-E", "UTF8"]
            ),
            check=True, capture_output=True,
        )
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off"
        subprocess.run(
            _as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-w", "-t", "60",
                 "-l", str(self.base / "server.log"), "start"]
            ),
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"]
            ),
            check=False, capture_output=True,
        )

    def pids(self) -> list[int]:
        """The postmaster and its children (backends, writer, WAL writer...): whose CPU the bench reads."""
        try:
            main = int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        found = [main]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                raw = stat.read_text()
            except OSError:
                continue
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == main:
                found.append(int(stat.parent.name))
        return found

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (Debian package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="ledgerhub-pg-"))
    os.chmod(base, 0o755)  # noqa: S103 - the server user (postgres, when run as root) must enter it
    server = PostgresServer(base / "pg", _free_port(), bindir, durable=durable)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
