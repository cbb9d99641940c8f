"""Capturing what the code under test logs, from any thread, for the length of a `with` block.

One handler on one logger, that logger's level lowered for the block and both restored afterwards;
records arrive as formatted lines (with any traceback), so a test can search them as an operator would.
The Fabric upgrade tests count the client's re-endorsements while worker threads submit; the secrets
test reads every line the hub logs at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# the Fabric client logs "endorsing again" each time it re-endorses a transaction (peers disagreed after a
# chaincode upgrade, or the transaction was invalidated)
FABRIC_CLIENT_LOG = "hub.ledger.fabric.client"


class _Lines(logging.Handler):
    def __init__(self, level: int, contains: str | None, fmt: str) -> None:
        super().__init__(level=level)
        self.contains = contains
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        if self.contains is None or self.contains in record.getMessage():
            self.lines.append(self.format(record))  # with the traceback of exc_info, if any


@contextmanager
def captured_log(name: str = "", level: int = logging.INFO, *, contains: str | None = None,
                 fmt: str = "%(message)s") -> Iterator[list[str]]:
    """The records of logger `name` ("" is the root: everything) at `level` or above, formatted with
    `fmt`, while the block runs; only those whose message contains `contains` when it is given. The list
    fills as records arrive, from any thread."""
    logger = logging.getLogger(name)
    handler = _Lines(level, contains, fmt)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
