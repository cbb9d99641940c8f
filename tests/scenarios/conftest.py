"""Fixtures of the scenario tier (pytest finds them by name; a module never imports them), and the Fabric
network's resident memory (idle, and the peak while the scenarios ran) printed after a run.

- `story` (parametrised: embedded, fabric): the scenario's ledger and id suffix (tests/helpers/story.py);
- `story_extra_orgs`: orgs beyond Provider/Customer/Auditor that get endorsement keys on the embedded
  ledger; () here, a module overrides it (test_late_and_shared_both_ledgers: a second customer org).
(tests/integration has a `story` of its own: the bank tests' hub.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.story import LEDGERS, NETWORK_RSS_KB, RssSampler, Story, network_rss_kb, open_ledger_for


@pytest.fixture
def story_extra_orgs() -> tuple[str, ...]:
    return ()


@pytest.fixture(params=LEDGERS)
def story(request: pytest.FixtureRequest, tmp_path: Path, story_extra_orgs: tuple[str, ...]
          ) -> Iterator[Story]:
    """The ledger a scenario runs on, and the suffix that keeps its ids apart from every other test's."""
    ledger = open_ledger_for(request.param, request, tmp_path, story_extra_orgs)
    story = Story(kind=request.param, ledger=ledger, suffix=uuid.uuid4().hex[:10], tmp=tmp_path)
    try:
        if request.param == "fabric":
            network = request.getfixturevalue("fabric_network")
            NETWORK_RSS_KB.setdefault("idle", sum(network_rss_kb(network).values()))
            with RssSampler(network):
                yield story
        else:
            yield story
    finally:
        ledger.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if NETWORK_RSS_KB:
        idle, peak = NETWORK_RSS_KB.get("idle", 0), NETWORK_RSS_KB.get("peak", 0)
        terminalreporter.write_line(
            f"Fabric network resident memory (orderer + peers + chaincode): idle {idle // 1024} MB "
            f"before the first scenario, peak {peak // 1024} MB while the scenarios ran"
        )
