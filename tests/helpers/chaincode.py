"""Builders for chaincode tests, shared with the hub and ledger engineers.

- `make_device_key(seed)`: a P-256 device key pair (deterministic from the seed, so tests are repeatable);
- `signed_message(key, device_id, readings, message_id=...)`: a usage message signed the way devices sign;
- `sample_asset(...)`, `sample_contract(...)`: the API.md examples as fresh dicts, with overrides;
- `ChaincodeLedger`: an `InMemoryWorld` plus a transaction counter. `submit` runs one function on a fresh
  `InMemoryStub`, commits on success and commits nothing on refusal; `refuse` asserts a refusal code and
  that the world did not change; `evaluate` runs a query without committing;
- `active_contract(ledger, ...)`: asset registered, contract proposed and accepted, in three transactions;
- `example_usage(key)`: the usage behind API.md's example invoice (170 readings), signed;
- `run(world, fn, body, ...)`: one transaction on your own `InMemoryWorld`, committed unless refused;
- the unit tier's fixtures over these (`chaincode_ledger`, `active_ledger`, `ledger`) are in
  tests/unit/conftest.py.

Nothing here reads the wall clock: every transaction takes an explicit timestamp (default: the ledger's
`now`, which tests move forward with `ledger.now = ...`).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chaincode.contract import invoke
from chaincode.errors import ChaincodeError
from chaincode.stub import InMemoryStub, InMemoryWorld
from tests.helpers.rating import EXAMPLE_CONTRACT

PROVIDER = "ProviderMSP"
CUSTOMER = "CustomerMSP"
AUDITOR = "AuditorMSP"
DEVICE_ID = "mri-berlin-01"
CONTRACT_ID = "ctr-mri-001"

# November 2026 in Europe/Berlin (UTC+1): the sample contract's first period.
NOV_START = dt.datetime(2026, 10, 31, 23, 0, tzinfo=dt.UTC)
NOV_END = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)
MID_NOV = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class DeviceKey:
    private_key: ec.EllipticCurvePrivateKey
    public_pem: str

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def make_device_key(seed: str | int = 1) -> DeviceKey:
    """A P-256 key derived from `seed` (the same seed gives the same key in every run)."""
    scalar = int.from_bytes(hashlib.sha256(f"device-key-{seed}".encode()).digest(), "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    private = ec.derive_private_key(scalar % (n - 1) + 1, ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return DeviceKey(private, pem)


def reading(
    rid: str,
    metric: str = "scan",
    quantity: str = "1",
    timestamp: str = "2026-11-03T09:15:00+01:00",
    **extra: Any,
) -> dict[str, Any]:
    return {"id": rid, "metric": metric, "quantity": quantity, "timestamp": timestamp, **extra}


def sign(key: DeviceKey, message: Mapping[str, Any]) -> dict[str, Any]:
    """`message` with `signature` set: ECDSA P-256/SHA-256 over RFC 8785 JSON of the rest."""
    body = {k: v for k, v in message.items() if k != "signature"}
    return {**body, "signature": key.sign(rfc8785.dumps(body))}


def signed_message(
    key: DeviceKey,
    readings: Sequence[Mapping[str, Any]],
    *,
    device_id: str = DEVICE_ID,
    message_id: str = "msg-1",
) -> dict[str, Any]:
    return sign(
        key,
        {
            "device_id": device_id,
            "message_id": message_id,
            "readings": [dict(r) if isinstance(r, Mapping) else r for r in readings],
        },
    )


def recent(minutes: int) -> str:
    """A reading timestamp `minutes` ago, kept inside the current (UTC) month: for tests of the open
    period (cost to date, charts, alerts)."""
    now = dt.datetime.now(dt.UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(now - dt.timedelta(minutes=minutes), start + dt.timedelta(seconds=1)).isoformat()


def sample_asset(
    key: DeviceKey, asset_id: str = DEVICE_ID, description: str = "MRI scanner, Berlin clinic"
) -> dict[str, Any]:
    return {"id": asset_id, "description": description, "public_key": key.public_pem}


# one copy of the API.md example contract for every test helper (rating tests read it directly)
_SAMPLE_CONTRACT: dict[str, Any] = EXAMPLE_CONTRACT
assert (_SAMPLE_CONTRACT["id"], _SAMPLE_CONTRACT["assets"]) == (CONTRACT_ID, [DEVICE_ID])
assert (_SAMPLE_CONTRACT["provider"], _SAMPLE_CONTRACT["customer"]) == (PROVIDER, CUSTOMER)


def sample_contract(**overrides: Any) -> dict[str, Any]:
    """The API.md contract (a deep copy), with top-level fields replaced by `overrides`."""
    contract = copy.deepcopy(_SAMPLE_CONTRACT)
    contract.update(overrides)
    return contract


def run(
    world: InMemoryWorld,
    fn: str,
    body: Mapping[str, Any],
    *,
    org: str = PROVIDER,
    at: dt.datetime = MID_NOV,
    tx_id: str = "tx-1",
    commit: bool = True,
) -> tuple[Any, InMemoryStub]:
    """Run one function on a fresh `InMemoryStub` over `world`; commit unless told not to (or refused:
    a `ChaincodeError` propagates and nothing is committed). Returns (decoded answer, stub)."""
    stub = InMemoryStub(world, tx_id=tx_id, timestamp=at, creator_msp_id=org)
    out = invoke(stub, fn, [json.dumps(body)])
    if commit:
        stub.commit()
    return json.loads(out), stub


def _snapshot(world: InMemoryWorld) -> tuple[Any, ...]:
    state = {k: (v.value, tuple(v.endorsement or ())) for k, v in world.state.items()}
    return state, len(world.events), len(world.write_log)


@dataclass
class ChaincodeLedger:
    """A tiny ledger for tests: one committed world, transactions numbered tx-0001, tx-0002, ..."""

    world: InMemoryWorld = field(default_factory=InMemoryWorld)
    now: dt.datetime = MID_NOV
    counter: int = 0
    last_stub: InMemoryStub | None = None

    def _stub(self, org: str, at: dt.datetime | None) -> InMemoryStub:
        self.counter += 1
        tx_id = hashlib.sha256(f"tx-{self.counter}".encode()).hexdigest()
        stub = InMemoryStub(self.world, tx_id=tx_id, timestamp=at or self.now, creator_msp_id=org)
        self.last_stub = stub
        return stub

    def submit_raw(
        self, fn: str, args: Sequence[bytes | str], *, org: str = PROVIDER, at: dt.datetime | None = None
    ) -> bytes:
        stub = self._stub(org, at)
        out = invoke(stub, fn, args)
        stub.commit()
        return out

    def submit(
        self, fn: str, body: Mapping[str, Any], *, org: str = PROVIDER, at: dt.datetime | None = None
    ) -> Any:
        return json.loads(self.submit_raw(fn, [json.dumps(body)], org=org, at=at))

    def evaluate(
        self, fn: str, body: Mapping[str, Any], *, org: str = PROVIDER, at: dt.datetime | None = None
    ) -> Any:
        stub = self._stub(org, at)
        out = invoke(stub, fn, [json.dumps(body)])
        assert stub.writes == [], f"query {fn} wrote {stub.writes}"
        return json.loads(out)

    def refuse(
        self,
        fn: str,
        body: Mapping[str, Any] | None,
        code: str,
        *,
        org: str = PROVIDER,
        at: dt.datetime | None = None,
        args: Sequence[bytes | str] | None = None,
    ) -> ChaincodeError:
        """Assert that `fn` is refused with `code`, wrote nothing (not even inside the transaction), and
        that the world is exactly as before."""
        before = _snapshot(self.world)
        stub = self._stub(org, at)
        with pytest.raises(ChaincodeError) as info:
            invoke(stub, fn, args if args is not None else [json.dumps(body)])
        assert info.value.code == code, f"expected {code}, got {info.value.code}: {info.value.message}"
        # the ledger discards a refused transaction's writes; beyond that, the contract refuses before it
        # writes anything, so no partial effect exists even inside the transaction
        assert stub.writes == [], f"{fn} refused after writing {[k for k, _ in stub.writes]}"
        assert stub.event is None
        assert _snapshot(self.world) == before
        return info.value

    def noop(
        self, fn: str, body: Mapping[str, Any], *, org: str = PROVIDER, at: dt.datetime | None = None
    ) -> Any:
        """Run `fn`, assert it wrote nothing and set no event (an idempotent replay), return its answer."""
        stub = self._stub(org, at)
        out = invoke(stub, fn, [json.dumps(body)])
        assert stub.writes == [], f"{fn} replay wrote {[k for k, _ in stub.writes]}"
        assert stub.event is None
        stub.commit()
        return json.loads(out)

    def state(self, key: str) -> Any:
        raw = self.world.value(key)
        return None if raw is None else json.loads(raw)

    def endorsement(self, key: str) -> list[str] | None:
        entry = self.world.state.get(key)
        return entry.endorsement if entry else None

    def last_event(self) -> tuple[str, Any]:
        _, name, payload = self.world.events[-1]
        return name, json.loads(payload)


def example_usage(
    key: DeviceKey, *, device_id: str = DEVICE_ID, messages: int = 1, prefix: str = "r"
) -> list[dict[str, Any]]:
    """The API.md invoice's usage, signed: 130 scans and 40 x 0.75 magnet hours in November 2026 (170
    readings), split into `messages` messages. Closing 2026-11 of the sample contract on it gives
    subtotal 11475.00, tax 2180.25, total 13655.25."""
    readings = []
    for i in range(170):
        day, minute = 1 + i % 14, i // 14
        ts = f"2026-11-{day:02d}T10:{minute:02d}:00+01:00"
        if i < 130:
            readings.append(reading(f"{prefix}-{i:06d}", "scan", "1", ts))
        else:
            readings.append(reading(f"{prefix}-{i:06d}", "magnet_hours", "0.75", ts))
    size = -(-len(readings) // messages)
    return [
        signed_message(
            key, readings[j : j + size], device_id=device_id, message_id=f"{prefix}-msg-{j // size}"
        )
        for j in range(0, len(readings), size)
    ]


def active_contract(
    ledger: ChaincodeLedger, key: DeviceKey | None = None, **overrides: Any
) -> dict[str, Any]:
    """Register the sample asset, propose and accept the sample contract (with `overrides`)."""
    key = key or make_device_key()
    contract = sample_contract(**overrides)
    for asset_id in contract["assets"]:
        ledger.submit("RegisterAsset", sample_asset(key, asset_id), org=contract["provider"])
    ledger.submit("ProposeContract", contract, org=contract["provider"])
    return ledger.submit("AcceptContract", {"contract_id": contract["id"]}, org=contract["customer"])
