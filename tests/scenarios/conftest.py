"""Prints the Fabric network's resident memory (idle, and the peak while the scenarios ran) after a run."""

from __future__ import annotations

import pytest

from tests.helpers.story import NETWORK_RSS_KB


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NETWORK_RSS_KB:
        idle, peak = NETWORK_RSS_KB.get("idle", 0), NETWORK_RSS_KB.get("peak", 0)
        terminalreporter.write_line(
            f"Fabric network resident memory (orderer + peers + chaincode): idle {idle // 1024} MB "
            f"before the first scenario, peak {peak // 1024} MB while the scenarios ran"
        )
