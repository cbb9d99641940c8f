"""Helpers for embedded-ledger tests: org signers, a settable clock, the ledger running the real billing
contract (`contract_ledger`, the one way tests open it), a small toy chaincode, and a ledger factory for it.

The toy chaincode exercises every `Stub` feature the ledger must support (state, own writes, ranges,
composite keys, history, events, key-level endorsement, refusals) without depending on the billing
contract, so ledger tests fail only for ledger reasons.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaincode.errors import ChaincodeError
from chaincode.stub import Stub, create_composite_key
from hub.keys.signer import Signer
from hub.ledger.embedded import EmbeddedLedger

PROVIDER = "ProviderMSP"
CUSTOMER = "CustomerMSP"
AUDITOR = "AuditorMSP"
ORGS = (PROVIDER, CUSTOMER, AUDITOR)


def make_signers(orgs: Sequence[str] = ORGS) -> dict[str, Signer]:
    """New org keys on the test SoftHSM2 token (PKCS#11), as the hub's ledgers use in production."""
    from tests.helpers.softhsm import endorsement_signers

    return endorsement_signers(orgs)


class Clock:
    """The network's time in a test: a ledger's `clock=` (and the hub's) calls it; set `now` to move it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def contract_ledger(path: Path, clock: Clock | None = None, *, signers: dict[str, Signer] | None = None,
                    orgs: Sequence[str] = ORGS, **kwargs: Any) -> EmbeddedLedger:
    """An embedded ledger running the real billing contract, the provider and the customer endorsing, with
    new org keys for `orgs` on the test SoftHSM2 token unless `signers` are given, the network's time from
    `clock` when given, and no fsync (`synchronous="OFF"`) unless `synchronous=` says otherwise. Further
    keyword arguments go to `EmbeddedLedger` as they are."""
    kwargs.setdefault("chaincode_orgs", (PROVIDER, CUSTOMER))
    kwargs.setdefault("synchronous", "OFF")
    if clock is not None:
        kwargs["clock"] = clock
    return EmbeddedLedger(path, signers if signers is not None else make_signers(orgs), **kwargs)


def arg(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def toy_invoke(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
    """A tiny contract: one JSON argument, bytes back."""
    a: dict[str, Any] = json.loads(args[0]) if args else {}
    if fn == "put":
        stub.put_state(a["key"], a["value"].encode())
        if "event" in a:
            stub.set_event(a["event"], a["value"].encode())
        return b"ok"
    if fn == "get":
        return stub.get_state(a["key"]) or b""
    if fn == "get_many":
        return json.dumps(
            [None if v is None else v.decode() for v in stub.get_multiple_states(a["keys"])]
        ).encode()
    if fn == "incr":
        value = int(stub.get_state(a["key"]) or b"0") + 1
        stub.put_state(a["key"], str(value).encode())
        stub.set_event("Incremented", json.dumps({"key": a["key"], "value": value}).encode())
        return str(value).encode()
    if fn == "put_then_read":
        stub.put_state(a["key"], a["value"].encode())
        return stub.get_state(a["key"]) or b""
    if fn == "delete":
        stub.del_state(a["key"])
        return b"deleted"
    if fn == "lock":
        stub.put_state(a["key"], a.get("value", "locked").encode())
        stub.set_key_endorsement(a["key"], a["orgs"])
        return b"locked"
    if fn == "policy":
        return json.dumps(stub.get_key_endorsement(a["key"])).encode()
    if fn == "reject":
        stub.put_state(a["key"], b"should not be written")
        raise ChaincodeError("invalid_argument", "toy refusal", field="key")
    if fn == "crash":
        raise RuntimeError("toy bug")
    if fn == "scan":
        keys = [k for k, _ in stub.get_state_by_range(a["start"], a["end"])]
        return json.dumps(keys).encode()
    if fn == "count_into":
        # range read + write: a phantom in the range must invalidate it
        n = sum(1 for _ in stub.get_state_by_range(a["start"], a["end"]))
        stub.put_state(a["target"], str(n).encode())
        return str(n).encode()
    if fn == "put_composite":
        key = create_composite_key(a["type"], a["attrs"])
        stub.put_state(key, a["value"].encode())
        return key.encode()
    if fn == "list_composite":
        rows = stub.get_state_by_partial_composite_key(a["type"], a["attrs"])
        return json.dumps([[k, v.decode()] for k, v in rows]).encode()
    if fn == "history":
        return json.dumps(
            [[m.tx_id, m.value.decode(), m.is_delete] for m in stub.get_history_for_key(a["key"])]
        ).encode()
    if fn == "whoami":
        return json.dumps(
            {
                "msp": stub.creator_msp_id(),
                "tx": stub.tx_id,
                "channel": stub.channel_id,
                "ts": stub.tx_timestamp().isoformat(),
            }
        ).encode()
    if fn == "transient":
        secret = stub.transient().get("secret", b"")
        stub.put_state(a["key"], str(len(secret)).encode())
        return secret
    if fn == "random":
        stub.put_state(a["key"], os.urandom(8).hex().encode())
        return b"random"
    raise ChaincodeError("unknown_function", f"no function {fn}")


def open_toy_ledger(path: Path, signers: dict[str, Signer], **kwargs: Any) -> EmbeddedLedger:
    kwargs.setdefault("chaincode", toy_invoke)
    kwargs.setdefault("chaincode_orgs", (PROVIDER, CUSTOMER))
    return EmbeddedLedger(path, signers, **kwargs)
