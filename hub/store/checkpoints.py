"""Where each consumer of the ledger's event stream stopped (`event_checkpoint`), read and written one way.

Several consumers of one stream may run at once (a hub's background loop beside an operator's
`run_until_idle`, two hub processes on one database). Writing the checkpoint is therefore an upsert, not a
read-then-insert that loses the race with a unique-key error, and it never moves a checkpoint back to an
earlier block: a slower writer cannot undo a faster one. Losing a slower writer's tx ids only means an
event is handled again, which every consumer tolerates (what it writes is keyed by the event).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy.orm import Session

from hub.store.models import EventCheckpoint


def read_checkpoint(session: Session, consumer: str) -> tuple[int, set[str]]:
    """(block to resume from, tx ids of that block already handled); (0, {}) for a new consumer."""
    row = session.get(EventCheckpoint, consumer)
    return (0, set()) if row is None else (row.block, set(json.loads(row.tx_ids)))


def save_checkpoint(session: Session, consumer: str, block: int, tx_ids: set[str],
                    now: dt.datetime | None = None) -> None:
    """Record (block, tx_ids) for `consumer` in the caller's transaction, unless it already stands later."""
    values = {"consumer": consumer, "block": block, "tx_ids": json.dumps(sorted(tx_ids)),
              "updated_at": now or dt.datetime.now(dt.UTC)}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the hub runs on SQLite and PostgreSQL only
        raise NotImplementedError(f"event checkpoints on {dialect}")
    statement = insert(EventCheckpoint).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[EventCheckpoint.consumer],
        set_={k: statement.excluded[k] for k in ("block", "tx_ids", "updated_at")},
        where=EventCheckpoint.block <= statement.excluded.block,
    )
    session.execute(statement)
