"""Event checkpoints are written one way (hub/store/checkpoints.py), on SQLite and on a real PostgreSQL: two
consumers saving their first checkpoint at the same moment both succeed (a read-then-insert lost that race
with a unique-key error, seen once in the suite), and a checkpoint never moves back to an earlier block."""

from __future__ import annotations

import threading

import pytest

from hub.store.checkpoints import read_checkpoint, save_checkpoint
from hub.store.session import make_engine, make_sessionmaker, migrate

pytestmark = pytest.mark.integration


def _sessions(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    migrate(engine)
    return make_sessionmaker(engine)


def test_a_new_consumer_reads_block_zero_and_a_save_is_read_back(database_url: str) -> None:
    db = _sessions(database_url)
    with db() as session:
        assert read_checkpoint(session, "c") == (0, set())
    with db.begin() as session:
        save_checkpoint(session, "c", 7, {"tx-b", "tx-a"})
    with db() as session:
        assert read_checkpoint(session, "c") == (7, {"tx-a", "tx-b"})
        assert read_checkpoint(session, "other") == (0, set())


def test_a_checkpoint_never_moves_back_but_the_same_block_takes_the_newer_tx_ids(database_url: str) -> None:
    db = _sessions(database_url)
    with db.begin() as session:
        save_checkpoint(session, "c", 10, {"tx-10"})
    with db.begin() as session:
        save_checkpoint(session, "c", 4, {"tx-4"})  # a slower writer
    with db() as session:
        assert read_checkpoint(session, "c") == (10, {"tx-10"})
    with db.begin() as session:
        save_checkpoint(session, "c", 10, {"tx-10", "tx-11"})
    with db() as session:
        assert read_checkpoint(session, "c") == (10, {"tx-10", "tx-11"})


def test_first_saves_racing_from_many_threads_all_succeed(database_url: str) -> None:
    db = _sessions(database_url)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def save(block: int) -> None:
        try:
            start.wait()
            with db.begin() as session:
                save_checkpoint(session, "racing", block, {f"tx-{block}"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(block,)) for block in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db() as session:
        assert read_checkpoint(session, "racing") == (8, {"tx-8"})
