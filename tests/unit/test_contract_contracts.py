"""ProposeContract / AcceptContract / GetContract, with their key-level endorsement."""

from __future__ import annotations

import pytest

from chaincode import keys
from tests.helpers.chaincode import (
    AUDITOR,
    CONTRACT_ID,
    CUSTOMER,
    DEVICE_ID,
    PROVIDER,
    ChaincodeLedger,
    active_contract,
    make_device_key,
    sample_asset,
    sample_contract,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def ledger() -> ChaincodeLedger:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(make_device_key()))
    return ledger


def test_propose_stores_contract_proposed_with_both_orgs_endorsement(ledger: ChaincodeLedger) -> None:
    out = ledger.submit("ProposeContract", sample_contract())
    assert out == {
        **sample_contract(),
        "status": "PROPOSED",
        "proposed_tx": ledger.last_stub.tx_id,
        "accepted_tx": None,
        "accepted_at": None,
        "reading_key_version": 2,
    }
    assert ledger.state(keys.contract(CONTRACT_ID)) == out
    assert ledger.endorsement(keys.contract(CONTRACT_ID)) == sorted([PROVIDER, CUSTOMER])
    assert ledger.last_event() == ("ContractProposed", {"contract_id": CONTRACT_ID})
    # proposing does not bind the asset yet
    assert ledger.state(keys.asset(DEVICE_ID))["contract_id"] is None


def test_accept_activates_and_binds_assets(ledger: ChaincodeLedger) -> None:
    ledger.submit("ProposeContract", sample_contract())
    out = ledger.submit("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER)
    assert out["status"] == "ACTIVE"
    assert out["accepted_tx"] == ledger.last_stub.tx_id
    assert out["accepted_at"] == "2026-11-15T12:00:00Z"
    assert ledger.state(keys.asset(DEVICE_ID))["contract_id"] == CONTRACT_ID
    assert ledger.endorsement(keys.contract(CONTRACT_ID)) == sorted([PROVIDER, CUSTOMER])
    assert ledger.last_event() == ("ContractActivated", {"contract_id": CONTRACT_ID})
    assert ledger.evaluate("GetContract", {"id": CONTRACT_ID}, org=AUDITOR) == out


def test_repeated_proposal_and_acceptance_are_no_ops(ledger: ChaincodeLedger) -> None:
    proposed = ledger.submit("ProposeContract", sample_contract())
    assert ledger.noop("ProposeContract", sample_contract()) == proposed
    accepted = ledger.submit("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER)
    assert ledger.noop("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER) == accepted


def test_propose_by_other_than_provider_is_forbidden(ledger: ChaincodeLedger) -> None:
    ledger.refuse("ProposeContract", sample_contract(), "forbidden", org=CUSTOMER)
    ledger.refuse("ProposeContract", sample_contract(), "forbidden", org=AUDITOR)


def test_accept_by_other_than_customer_is_forbidden(ledger: ChaincodeLedger) -> None:
    ledger.submit("ProposeContract", sample_contract())
    ledger.refuse("AcceptContract", {"contract_id": CONTRACT_ID}, "forbidden", org=PROVIDER)
    ledger.refuse("AcceptContract", {"contract_id": CONTRACT_ID}, "forbidden", org=AUDITOR)


def test_assets_of_another_org_are_forbidden() -> None:
    ledger = ChaincodeLedger()
    ledger.submit("RegisterAsset", sample_asset(make_device_key()), org="OtherMSP")
    ledger.refuse("ProposeContract", sample_contract(), "forbidden")


def test_unknown_asset_in_proposal(ledger: ChaincodeLedger) -> None:
    ledger.refuse("ProposeContract", sample_contract(assets=[DEVICE_ID, "ghost"]), "unknown_asset")


def test_invalid_plan_lists_every_problem(ledger: ChaincodeLedger) -> None:
    bad = sample_contract(currency="XXX", timezone="Mars/Olympus")
    err = ledger.refuse("ProposeContract", bad, "invalid_plan")
    assert {e["path"] for e in err.details["errors"]} >= {"currency", "timezone"}


@pytest.mark.parametrize(
    "change",
    [
        {"id": ""},
        {"provider": None},
        {"customer": PROVIDER},
        {"assets": []},
        {"assets": "mri-berlin-01"},
        {"assets": [DEVICE_ID, DEVICE_ID]},
        {"erp": "sap"},
    ],
)
def test_malformed_contract_is_invalid_argument(ledger: ChaincodeLedger, change: dict) -> None:
    ledger.refuse("ProposeContract", sample_contract(**change), "invalid_argument")


def test_other_contract_under_a_taken_id_is_contract_exists(ledger: ChaincodeLedger) -> None:
    ledger.submit("ProposeContract", sample_contract())
    ledger.refuse("ProposeContract", sample_contract(minimum_commitment="1.00"), "contract_exists")


def test_asset_bound_to_an_active_contract_is_in_use() -> None:
    ledger = ChaincodeLedger()
    active_contract(ledger)
    ledger.refuse("ProposeContract", sample_contract(id="ctr-2"), "asset_in_use")


def test_second_acceptance_over_a_shared_asset_is_asset_in_use(ledger: ChaincodeLedger) -> None:
    # two proposals for one asset may coexist; only one can become active
    ledger.submit("ProposeContract", sample_contract())
    ledger.submit("ProposeContract", sample_contract(id="ctr-2"))
    ledger.submit("AcceptContract", {"contract_id": CONTRACT_ID}, org=CUSTOMER)
    ledger.refuse("AcceptContract", {"contract_id": "ctr-2"}, "asset_in_use", org=CUSTOMER)


def test_accept_unknown_contract(ledger: ChaincodeLedger) -> None:
    ledger.refuse("AcceptContract", {"contract_id": "nope"}, "unknown_contract", org=CUSTOMER)
    ledger.refuse("GetContract", {"id": "nope"}, "unknown_contract")


@pytest.mark.parametrize(
    "field", ["status", "proposed_tx", "accepted_tx", "accepted_at", "last_closed_period"]
)
def test_ledger_fields_cannot_be_proposed(ledger: ChaincodeLedger, field: str) -> None:
    ledger.refuse("ProposeContract", {**sample_contract(), field: "ACTIVE"}, "invalid_argument")


def test_run_helper_commits_on_a_plain_world() -> None:
    from chaincode.stub import InMemoryWorld
    from tests.helpers.chaincode import run

    world = InMemoryWorld()
    out, stub = run(world, "RegisterAsset", sample_asset(make_device_key()), tx_id="t1")
    assert out["registered_tx"] == "t1"
    assert world.value(keys.asset(DEVICE_ID)) is not None
    assert stub.writes == world.write_log[-1][1]


def test_taken_id_is_contract_exists_before_other_checks(ledger: ChaincodeLedger) -> None:
    stored = ledger.submit("ProposeContract", sample_contract())
    ledger.refuse("ProposeContract", {**stored, "status": None}, "contract_exists")
    ledger.refuse("ProposeContract", sample_contract(currency="XXX"), "contract_exists")


def test_ended_contract_cannot_be_accepted_again() -> None:
    import datetime as dt

    from tests.helpers.chaincode import NOV_END

    ledger = ChaincodeLedger()
    active_contract(ledger, make_device_key(), end="2026-11-30")
    ledger.submit("CloseBillingPeriod", {"contract_id": CONTRACT_ID, "period": "2026-11"}, at=NOV_END)
    assert ledger.state(keys.contract(CONTRACT_ID))["status"] == "ENDED"
    ledger.refuse(
        "AcceptContract",
        {"contract_id": CONTRACT_ID},
        "invalid_state_transition",
        org=CUSTOMER,
        at=NOV_END + dt.timedelta(days=1),
    )
