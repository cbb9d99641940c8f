"""What the hub does when an amendment has been accepted on the ledger (ADR 0046).

`on_accepted` is the one place: the API's accept route calls it after the commit. It refreshes the
contract's read model (its `end` may have changed); the projector also refreshes it from the ledger's
`ContractAmended` event, which any hub on the network sees. `LISTENERS` are called with (contract,
amendment, commit) after the read model. A retried acceptance (the same request again) calls them again
with the same amendment: its `answered_tx` (the accepting transaction) is the stable id to de-duplicate on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class ContractWriter(Protocol):
    """The read models' write-through (hub.store.projector.Projector)."""

    def write_contract(self, contract: dict[str, Any]) -> None: ...


Listener = Callable[[dict[str, Any], dict[str, Any], Any], None]  # (contract, amendment, commit)
LISTENERS: list[Listener] = []


def on_accepted(projector: ContractWriter, contract: dict[str, Any], amendment: dict[str, Any],
                commit: Any) -> None:
    """The contract (as the ledger now holds it) has taken amendment `amendment` in `commit`."""
    projector.write_contract(contract)
    for listener in LISTENERS:
        listener(contract, amendment, commit)
