"""What a proof bundle may disclose: only the proven contract's records (ADR 0028).

A bundle ships whole transaction envelopes (their signatures cover every byte), so whatever a
transaction carries, the bundle carries: its arguments (a `RecordUsage` transaction's messages, with
device ids, reading ids and quantities), its write set and its answer. Since ADR 0028 a `RecordUsage`
transaction holds one contract's messages (the hub batches per contract, the chaincode refuses
`mixed_contracts`), so a contract's transactions hold nothing of another contract's. `foreign_data` names
whatever in a transaction belongs elsewhere; the builder refuses to hand out a bundle with any (ledgers
written before ADR 0028 may hold mixed transactions) and the offline verifier reports it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from chaincode import keys
from chaincode.late import LATE_USAGE
from chaincode.stub import split_composite_key
from chaincode.tx import prepaid, running

# key types whose first attribute is the contract id (the prepaid balance, ADR 0043, the running period
# and its draws, ADR 0051, and late usage, ADR 0048, are the contract's own records too)
_CONTRACT_KEYS = {keys.CONTRACT, keys.READING, keys.USAGE_BATCH, keys.PERIOD, prepaid.PREPAID,
                  running.RUNNING, running.DRAW, LATE_USAGE}
# key types whose first attribute is a device (asset) id
_DEVICE_KEYS = {keys.ASSET, keys.USAGE_MESSAGE}


def foreign_data(
    contract_id: str,
    devices: Collection[str],
    fn: str,
    args: Sequence[bytes],
    writes: Mapping[str, bytes | None],
) -> list[str]:
    """What transaction (`fn`, `args`, `writes`) carries that is not contract `contract_id`'s or one of
    its `devices`': one sentence per finding, empty when the transaction is the contract's alone."""
    found: list[str] = []
    for key, value in writes.items():
        owner = _key_owner(key, value)
        if owner is None:
            found.append("writes a key this contract does not write")
        elif owner[0] == "contract" and owner[1] != contract_id:
            found.append(f"writes records of contract {owner[1]}")
        elif owner[0] == "device" and owner[1] not in devices:
            found.append(f"writes records of device {owner[1]}, not a device of {contract_id}")
    if fn == "RecordUsage":
        for device in _message_devices(args):
            if device not in devices:
                found.append(f"carries a usage message of device {device}, not a device of {contract_id}")
    return sorted(set(found))


def _key_owner(key: str, value: bytes | None) -> tuple[str, str] | None:
    try:
        object_type, attrs = split_composite_key(key)
    except ValueError:
        return None
    if not attrs:
        return None
    if object_type in _CONTRACT_KEYS:
        return "contract", attrs[0]
    if object_type in _DEVICE_KEYS:
        return "device", attrs[0]
    if object_type == keys.INVOICE:
        record = _record(value)
        owner = record.get("contract_id") if record else None
        return ("contract", owner) if isinstance(owner, str) else None
    return None


def _record(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _message_devices(args: Sequence[bytes]) -> list[str]:
    """Device ids of a RecordUsage transaction's messages ("?" for a message that names none)."""
    try:
        body = json.loads(args[0]) if len(args) == 1 else None
    except ValueError:
        body = None
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ["?"]
    out = []
    for message in messages:
        device = message.get("device_id") if isinstance(message, dict) else None
        out.append(device if isinstance(device, str) else "?")
    return out
