"""tests/helpers/logs.py: `captured_log` sees records from other threads, filters, and restores the logger."""

from __future__ import annotations

import logging
import threading

import pytest

from tests.helpers.logs import FABRIC_CLIENT_LOG, captured_log

pytestmark = pytest.mark.unit


def test_captured_log_collects_matching_records_from_any_thread_and_restores_the_logger() -> None:
    logger = logging.getLogger(FABRIC_CLIENT_LOG)
    before = (logger.level, list(logger.handlers))

    def worker() -> None:
        logger.info("tx %s: endorsers disagreed, endorsing again", "t1")
        logger.info("committed %s", "t1")
        logger.debug("endorsing again below the level")

    with captured_log(FABRIC_CLIENT_LOG, contains="endorsing again") as lines:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    logger.info("endorsing again after the block")
    assert lines == ["tx t1: endorsers disagreed, endorsing again"]
    assert (logger.level, list(logger.handlers)) == before


def test_captured_log_formats_lines_with_their_traceback() -> None:
    with captured_log("", logging.DEBUG, fmt="%(levelname)s %(name)s %(message)s") as lines:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("hub.some").exception("failed")
    assert lines[0].startswith("ERROR hub.some failed\nTraceback")
    assert "ValueError: boom" in lines[0]
