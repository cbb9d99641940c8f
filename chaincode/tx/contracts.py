"""Contracts: proposed by the provider, accepted by the customer, then binding on both.

Key-level endorsement does the binding: from the proposal on, the contract key needs provider AND customer
endorsements, so neither org's peer alone can accept, alter or close on the contract.
"""

from __future__ import annotations

from typing import Any

from chaincode import keys, rating, terms
from chaincode import late as late_readings
from chaincode.errors import ChaincodeError
from chaincode.model import ACTIVE, ENDED, PROPOSED, check_id, format_ts, require_id, require_str
from chaincode.tx.common import Tx

# Fields the ledger adds around the contract as proposed.
# `reading_key_version` names the layout of the contract's reading keys (chaincode.keys, ADR 0026): set at
# proposal, so every contract proposed by this chaincode keys readings by device; older records lack it.
LEDGER_FIELDS = (
    "status",
    "proposed_tx",
    "accepted_tx",
    "accepted_at",
    "last_closed_period",
    keys.READING_KEY_VERSION_FIELD,
    # set by accepted amendments (chaincode.tx.amendments, ADR 0046)
    "versions",
    "plan_version",
    "ended_by",
)


def as_proposed(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in LEDGER_FIELDS}


def _check_parties(body: dict[str, Any]) -> tuple[str, str, list[str]]:
    provider = require_id(body, "provider")
    customer = require_id(body, "customer")
    if provider == customer:
        raise ChaincodeError(
            "invalid_argument", "provider and customer must be different orgs", field="customer"
        )
    assets = body.get("assets")
    if not isinstance(assets, list) or not assets:
        raise ChaincodeError(
            "invalid_argument", "assets must be a non-empty list of asset ids", field="assets"
        )
    for a in assets:
        check_id(a, "assets[]")
    if len(set(assets)) != len(assets):
        raise ChaincodeError("invalid_argument", "assets lists an asset twice", field="assets")
    erp = body.get("erp")
    if erp is not None and (
        not isinstance(erp, dict) or not all(isinstance(v, str | None) for v in erp.values())
    ):
        raise ChaincodeError(
            "invalid_argument", "erp must map provider/customer to a connector name", field="erp"
        )
    return provider, customer, assets


def _check_asset_free(tx: Tx, asset: dict[str, Any], contract_id: str) -> None:
    bound = asset.get("contract_id")
    if bound and bound != contract_id:
        other = tx.get(keys.contract(bound))
        if other is not None and other["status"] == ACTIVE:
            raise ChaincodeError(
                "asset_in_use",
                f"asset {asset['id']} is bound to active contract {bound}",
                asset_id=asset["id"],
                contract_id=bound,
            )


def propose_contract(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ProposeContract` by the contract's provider. The same proposal again returns what is stored."""
    contract_id = require_id(body, "id")
    provider, customer, assets = _check_parties(body)
    if tx.creator != provider:
        raise ChaincodeError(
            "forbidden", f"only the provider {provider} may propose this contract", msp_id=tx.creator
        )
    # a taken id is a conflict whatever else is wrong with the new proposal
    existing = tx.get(keys.contract(contract_id))
    if existing is not None:
        if as_proposed(existing) == body:
            return existing
        raise ChaincodeError(
            "contract_exists", f"contract {contract_id} already exists", contract_id=contract_id
        )
    reserved = sorted(set(LEDGER_FIELDS) & set(body))
    if reserved:
        raise ChaincodeError(
            "invalid_argument", f"fields set by the ledger cannot be proposed: {reserved}", fields=reserved
        )
    late_readings.check_policy(body)  # ADR 0048
    errors = rating.validate_plan(body)
    if errors:
        raise ChaincodeError("invalid_plan", f"the plan has {len(errors)} error(s)", errors=errors)
    terms.validate(body)  # prepaid terms, billing threshold (ADR 0051)
    for asset_id in assets:
        asset = tx.asset(asset_id)
        if asset["provider"] != provider:
            raise ChaincodeError(
                "forbidden",
                f"asset {asset_id} belongs to {asset['provider']}",
                asset_id=asset_id,
                msp_id=tx.creator,
            )
        _check_asset_free(tx, asset, contract_id)
    record = {
        **body,
        "status": PROPOSED,
        "proposed_tx": tx.tx_id,
        "accepted_tx": None,
        "accepted_at": None,
        keys.READING_KEY_VERSION_FIELD: keys.READING_KEY_VERSION,
    }
    key = keys.contract(contract_id)
    tx.put(key, record)
    tx.stub.set_key_endorsement(key, [provider, customer])
    tx.event("ContractProposed", {"contract_id": contract_id})
    return record


def accept_contract(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`AcceptContract` by the customer: PROPOSED -> ACTIVE and the assets are bound to the contract.
    Accepting an already active contract returns it unchanged (a retried acceptance is not an error)."""
    contract_id = require_id(body, "contract_id")
    record = tx.contract(contract_id)
    if tx.creator != record["customer"]:
        raise ChaincodeError(
            "forbidden", f"only the customer {record['customer']} may accept {contract_id}", msp_id=tx.creator
        )
    if record["status"] == ACTIVE:
        return record
    if record["status"] != PROPOSED:
        raise ChaincodeError(
            "invalid_state_transition",
            f"contract {contract_id} is {record['status']}",
            status=record["status"],
        )
    bound = []
    for asset_id in record["assets"]:
        asset = tx.asset(asset_id)
        _check_asset_free(tx, asset, contract_id)
        if asset.get("shared"):
            continue  # a shared asset stays unbound: its bookings route its readings (ADR 0049)
        bound.append({**asset, "contract_id": contract_id})
    record = {**record, "status": ACTIVE, "accepted_tx": tx.tx_id, "accepted_at": format_ts(tx.timestamp)}
    key = keys.contract(contract_id)
    tx.put(key, record)
    tx.stub.set_key_endorsement(key, [record["provider"], record["customer"]])
    for asset in bound:
        tx.put(keys.asset(asset["id"]), asset)
    tx.event("ContractActivated", {"contract_id": contract_id})
    return record


def get_contract(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    return tx.contract(require_id(body, "id"))


def list_contracts(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`ListContracts {"party"}` -> `{"contracts": [{"id", "status", "provider", "customer"}, ...]}`: every
    contract the MSP id is provider or customer of, in key order (the network's `remove-org` asks it whether
    the org still has open contracts, ADR 0063)."""
    party = require_str(body, "party")
    found = []
    for _, record in tx.scan(keys.CONTRACT, []):
        if party in (record.get("provider"), record.get("customer")):
            found.append({k: record.get(k) for k in ("id", "status", "provider", "customer")})
    return {"contracts": found}


def is_live(record: dict[str, Any]) -> bool:
    return record["status"] in (ACTIVE, ENDED)
