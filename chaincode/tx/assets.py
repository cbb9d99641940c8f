"""Assets: a device and its public key, owned by the org that registers it."""

from __future__ import annotations

from typing import Any

from chaincode import keys
from chaincode.errors import ChaincodeError
from chaincode.model import optional_str, require_id
from chaincode.signature import check_public_key
from chaincode.tx.common import Tx


def register_asset(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """`RegisterAsset`: the caller's org becomes the provider. The same content again is a no-op, so a hub
    that lost the answer can retry; anything else under a taken id is `asset_exists`."""
    asset_id = require_id(body, "id")
    description = optional_str(body, "description") or ""
    public_key = check_public_key(body.get("public_key"))
    shared = body.get("shared", False)  # ADR 0049: in several contracts at once, routed by bookings
    if not isinstance(shared, bool):
        raise ChaincodeError("invalid_argument", "shared must be true or false", field="shared")
    existing = tx.get(keys.asset(asset_id))
    if existing is not None:
        same = (
            existing["provider"] == tx.creator
            and existing["public_key"] == public_key
            and existing["description"] == description
            and existing.get("shared", False) == shared
        )
        if same:
            return existing
        raise ChaincodeError("asset_exists", f"asset {asset_id} is already registered", asset_id=asset_id)
    record = {
        "id": asset_id,
        "description": description,
        "public_key": public_key,
        "provider": tx.creator,
        "contract_id": None,
        "registered_tx": tx.tx_id,
    }
    if shared:
        record["shared"] = True
    tx.put(keys.asset(asset_id), record)
    return record


def get_asset(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    return tx.asset(require_id(body, "id"))
