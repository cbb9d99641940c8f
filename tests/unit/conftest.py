"""Fixtures of the unit tier: the billing contract on an in-memory world (tests/helpers/chaincode.py).
pytest finds them by name; a test module never imports them. A module that needs its ledger in another
state defines its own `ledger` (it may take this one as its argument and build on it)."""

from __future__ import annotations

import pytest

from tests.helpers.chaincode import ChaincodeLedger, DeviceKey, active_contract, make_device_key


@pytest.fixture
def chaincode_ledger() -> ChaincodeLedger:
    """An empty in-memory ledger running the billing contract."""
    return ChaincodeLedger()


@pytest.fixture
def active_ledger() -> tuple[ChaincodeLedger, DeviceKey]:
    """A ledger with the API.md asset registered and its contract ACTIVE, and the device's key
    (`make_device_key()`, the default seed: the `KEY` of the unit modules)."""
    ledger, key = ChaincodeLedger(), make_device_key()
    active_contract(ledger, key)
    return ledger, key


@pytest.fixture
def ledger(active_ledger: tuple[ChaincodeLedger, DeviceKey]) -> ChaincodeLedger:
    """The ledger of `active_ledger`: the sample contract ACTIVE, usage signed with `make_device_key()`."""
    return active_ledger[0]
