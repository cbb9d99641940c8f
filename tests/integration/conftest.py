"""Fixtures of the integration tier. pytest finds them by name; a test module never imports them.

A module that needs something different defines a fixture of the same name; it overrides this one for
that module's tests only (e.g. test_portal_api's `client`, test_oracle_rest's `emulator`).

- `ledger`, `client`, `device_key`, `active`: the hub API on the real embedded ledger (tests/helpers/api.py);
- `story`: the bank tests' hub with one issued invoice (tests/helpers/bank.py); parametrise it indirectly
  with a dict of settings overrides;
- `signers`, `toy_ledger`: an embedded ledger running the toy chaincode (tests/helpers/embedded.py);
- `billed`, `bundle` (module scope): an embedded ledger billed up to an invoice, and its proof bundle
  (tests/helpers/audit.py); override `billed_by` to bill with another builder;
- `emulator`: the SAP SOAP emulator; `validator`: the EN 16931 schematron (module scope);
- `close_connectors` (autouse): closes every connector a test registered with `tests.helpers.erp.track`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.emulators.sap_soap import SapSoapEmulator
from hub.keys.signer import Signer
from hub.ledger.embedded import EmbeddedLedger
from tests.helpers import erp
from tests.helpers.api import ControlledLedger, embedded_ledger, hub_client, hub_settings, setup_contract
from tests.helpers.audit import Billed, billed_ledger, proof_of
from tests.helpers.bank import Story
from tests.helpers.chaincode import DeviceKey, make_device_key
from tests.helpers.embedded import make_signers, open_toy_ledger

# --- the hub API on the embedded ledger -----------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ControlledLedger]:
    """The real embedded ledger running the real contract, behind a ControlledLedger (counts, faults)."""
    controlled = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    yield controlled
    controlled.close()


@pytest.fixture
def client(tmp_path: Path, ledger: ControlledLedger) -> Iterator[TestClient]:
    with hub_client(hub_settings(tmp_path), ledger, background=False) as test_client:
        yield test_client


@pytest.fixture
def device_key() -> DeviceKey:
    return make_device_key("hub-api")


@pytest.fixture
def active(client: TestClient, device_key: DeviceKey) -> dict[str, Any]:
    """The sample contract, ACTIVE from the first day of last month."""
    return setup_contract(client, device_key)


# --- bank ---------------------------------------------------------------------------------------------


@pytest.fixture
def story(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Story]:
    """The bank story's hub; parametrise indirectly with a dict of settings overrides (e.g. parties).
    (tests/scenarios has a `story` of its own: the scenario on either ledger.)"""
    overrides = getattr(request, "param", {})
    ledger = embedded_ledger(tmp_path / "ledger")
    try:
        with hub_client(hub_settings(tmp_path, **overrides), ledger) as client:
            yield Story(client, ledger)
    finally:
        ledger.close()


# --- the embedded ledger with the toy chaincode ---------------------------------------------------------


@pytest.fixture
def signers() -> dict[str, Signer]:
    """Fresh org keys on the test SoftHSM2 token."""
    return make_signers()


@pytest.fixture
def toy_ledger(tmp_path: Path, signers: dict[str, Signer]) -> Iterator[EmbeddedLedger]:
    """An embedded ledger running the toy chaincode, endorsed by `signers`, cutting blocks quickly."""
    led = open_toy_ledger(tmp_path / "ledger", signers, block_timeout=0.002)
    yield led
    led.close()


# --- audit: a ledger billed up to an invoice, and its proof bundle ----------------------------------------


@pytest.fixture(scope="module")
def billed_by() -> Callable[[Path], Billed]:
    """How `billed` bills its ledger; a module overrides it (e.g. with `billed_models_ledger`)."""
    return billed_ledger


@pytest.fixture(scope="module")
def billed(billed_by: Callable[[Path], Billed], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Billed]:
    """One billed embedded ledger per module (the tests only read it)."""
    b = billed_by(tmp_path_factory.mktemp("audit") / "ledger")
    yield b
    b.ledger.close()


@pytest.fixture(scope="module")
def bundle(billed: Billed) -> dict[str, Any]:
    """The proof bundle of `billed`'s invoice."""
    return proof_of(billed)


# --- ERP and e-invoices --------------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[SapSoapEmulator]:
    """The SAP SOAP emulator over HTTP (modules testing another ERP override `emulator`)."""
    with SapSoapEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def close_connectors() -> Iterator[None]:
    """Every connector made through `tests.helpers.erp.track` is closed after each test."""
    yield
    erp.close_tracked()


@pytest.fixture(scope="module")
def validator(request: pytest.FixtureRequest) -> Any:
    """The EN 16931 UBL schematron from ../shared/erp (skips, loudly, without it)."""
    from connectors.ubl_validation import UblValidator

    shared = request.getfixturevalue("shared_erp")
    return UblValidator(shared / "ubl-peppol" / "schematron" / "EN16931-UBL-validation.xslt")
