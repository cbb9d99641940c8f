"""`PeerHeights.level` (hub/ledger/fabric/heights.py) on a scripted `height_of`: the client's answer to two
endorsers that disagree while neither lags behind its own commits (a chaincode definition committed by an
operator reached one peer first, ADR 0063). The real-network case is
tests/fabric/test_consortium_fabric.py::test_both_party_transactions_during_an_upgrade_commit_once."""

from __future__ import annotations

from hub.ledger.base import LedgerError
from hub.ledger.fabric.heights import PeerHeights


def test_level_waits_for_the_lower_peer_to_reach_the_highest_height() -> None:
    script = {"ProviderMSP": [12, 12], "CustomerMSP": [11, 11, 12], "AuditorMSP": [12]}
    asked: list[str] = []

    def height_of(org: str) -> int:
        asked.append(org)
        heights = script[org]
        return heights.pop(0) if len(heights) > 1 else heights[0]

    PeerHeights(height_of).level(["ProviderMSP", "CustomerMSP", "AuditorMSP"], timeout=5)
    assert script["CustomerMSP"] == [12]  # asked until it reported 12
    assert asked.count("ProviderMSP") == 1 and asked.count("AuditorMSP") == 1


def test_level_gives_up_at_the_deadline_and_skips_peers_that_cannot_say() -> None:
    def height_of(org: str) -> int:
        if org == "AuditorMSP":
            raise LedgerError("unreachable")
        return {"ProviderMSP": 9, "CustomerMSP": 7}[org]

    heights = PeerHeights(height_of)
    heights.level(["ProviderMSP", "CustomerMSP", "AuditorMSP"], timeout=0.1)  # returns, CustomerMSP still 7
    heights.level([], timeout=0.1)
