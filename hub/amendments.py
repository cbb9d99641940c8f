"""What the hub does when an amendment has been accepted on the ledger (ADR 0046).

`on_accepted` is the one place: the API's accept route calls it after the commit. It refreshes the
contract's read model (its `end` may have changed); the projector also refreshes it from the ledger's
`ContractAmended` event, which any hub on the network sees. Lifecycle webhooks (`contract.amended`)
hook in here: `LISTENERS` are called with (services, contract, amendment, commit) after the read model.
A retried acceptance (the same request again) calls them again with the same amendment: its
`answered_tx` (the accepting transaction) is the stable id to de-duplicate on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.api.deps import Services

Listener = Callable[[Services, dict[str, Any], dict[str, Any], Any], None]
LISTENERS: list[Listener] = []


def on_accepted(services: Services, contract: dict[str, Any], amendment: dict[str, Any], commit: Any) -> None:
    """The contract (as the ledger now holds it) has taken amendment `amendment` in `commit`."""
    services.extras["projector"].write_contract(contract)
    for listener in LISTENERS:
        listener(services, contract, amendment, commit)
