"""Builders for the hub API tests (their fixtures, `ledger`, `client`, `device_key`, `active`, are in
tests/integration/conftest.py).

- `TOKENS`: one bearer token per role and org (plus an unrelated org, to test visibility);
- `embedded_ledger(dir)`: the real embedded ledger running the real contract, with throwaway org keys;
- `ControlledLedger`: a proxy around any ledger that counts writes, records RecordUsage batch sizes and
  injects faults (raise before submitting, raise after committing, hold submits at a gate);
- `InMemoryLedger`: the Ledger protocol over the real contract on an `InMemoryWorld` (kept for unit-sized
  checks; the integration tests use the embedded ledger);
- `hub_client(...)`: a started app (lifespan running) behind a TestClient;
- `setup_contract(...)`: asset registered, contract proposed and accepted, all through HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from chaincode.contract import invoke
from chaincode.errors import ChaincodeError
from chaincode.stub import InMemoryStub, InMemoryWorld
from hub.config import Settings, TokenGrant
from hub.ledger.base import (
    BlockRecord,
    ChaincodeEvent,
    ChaincodeRejected,
    Commit,
    CommitStatusUnknown,
    LedgerError,
    LedgerNotFound,
    LedgerUnsupported,
    TransactionRecord,
)
from tests.helpers.chaincode import (
    CUSTOMER,
    PROVIDER,
    DeviceKey,
    make_device_key,
    sample_asset,
    sample_contract,
    signed_message,
)

OTHER = "OtherMSP"
TOKENS: dict[str, dict[str, str]] = {
    "tok-provider": {"org": PROVIDER, "role": "provider"},
    "tok-customer": {"org": CUSTOMER, "role": "customer"},
    "tok-auditor": {"org": "AuditorMSP", "role": "auditor"},
    "tok-operator": {"org": PROVIDER, "role": "operator"},
    "tok-customer-operator": {"org": CUSTOMER, "role": "operator"},
    "tok-device": {"org": PROVIDER, "role": "device"},
    "tok-other-provider": {"org": OTHER, "role": "provider"},
    "tok-other-customer": {"org": OTHER, "role": "customer"},
    "tok-other-operator": {"org": OTHER, "role": "operator"},
    "tok-other-device": {"org": OTHER, "role": "device"},
    "tok-expired": {"org": PROVIDER, "role": "provider", "expires_at": "2000-01-01T00:00:00+00:00"},
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def last_month(now: dt.datetime | None = None) -> tuple[str, str]:
    """(YYYY-MM, first day ISO) of the month before `now` (UTC): a period that has surely ended."""
    now = now or dt.datetime.now(dt.UTC)
    first = now.date().replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}", first.replace(day=1).isoformat()


def ts(period: str, day: int, hour: int = 10, minute: int = 0) -> str:
    return f"{period}-{day:02d}T{hour:02d}:{minute:02d}:00+01:00"


class InMemoryLedger:
    """The Ledger protocol over the real contract, one transaction at a time, one block per transaction."""

    network_id = "in-memory-test"

    def __init__(self) -> None:
        self.world = InMemoryWorld()
        self.submits: Counter[str] = Counter()
        self.fail_next: list[LedgerError] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._events: list[ChaincodeEvent] = []
        self._txs: dict[str, TransactionRecord] = {}
        self._blocks: list[BlockRecord] = []
        self._n = 0

    def _stub(self, org: str) -> InMemoryStub:
        self._n += 1
        tx_id = hashlib.sha256(f"tx-{self._n}".encode()).hexdigest()
        return InMemoryStub(self.world, tx_id=tx_id, timestamp=dt.datetime.now(dt.UTC), creator_msp_id=org)

    def evaluate(self, fn: str, args: Any = (), *, as_org: str) -> bytes:
        with self._lock:
            stub = self._stub(as_org)
            try:
                return invoke(stub, fn, list(args))
            except ChaincodeError as exc:
                raise ChaincodeRejected(exc) from None

    def submit(self, fn: str, args: Any = (), *, as_org: str,
               transient: Mapping[str, bytes] | None = None) -> Commit:
        with self._cond:
            if self.fail_next:
                raise self.fail_next.pop(0)
            stub = self._stub(as_org)
            try:
                out = invoke(stub, fn, list(args))
            except ChaincodeError as exc:
                raise ChaincodeRejected(exc) from None
            stub.commit()
            self.submits[fn] += 1
            block = len(self._blocks)
            prev = self._blocks[-1].hash if self._blocks else b"\0" * 32
            digest = hashlib.sha256(prev + stub.tx_id.encode()).digest()
            self._blocks.append(BlockRecord(block, prev, b"", digest, [stub.tx_id]))
            event = None
            if stub.event:
                event = ChaincodeEvent(block, stub.tx_id, stub.event[0], stub.event[1])
                self._events.append(event)
            self._txs[stub.tx_id] = TransactionRecord(
                stub.tx_id, block, 0, "VALID", stub.tx_timestamp(), as_org, b"", fn,
                [a if isinstance(a, bytes) else a.encode() for a in args], out, event, [])
            self._cond.notify_all()
            return Commit(stub.tx_id, block, "VALID", out)

    def events(self, since_block: int = 0, *, timeout: float | None = None) -> Iterator[ChaincodeEvent]:
        index = 0
        while True:
            with self._cond:
                while index < len(self._events) and self._events[index].block < since_block:
                    index += 1
                if index >= len(self._events) and not self._cond.wait_for(
                    lambda: index < len(self._events), timeout=timeout
                ):
                    return
                event = self._events[index]
            index += 1
            yield event

    def height(self) -> int:
        return len(self._blocks)

    def block(self, number: int) -> BlockRecord:
        if not 0 <= number < len(self._blocks):
            raise LedgerNotFound("block", number)
        return self._blocks[number]

    def tx(self, tx_id: str) -> TransactionRecord:
        if tx_id not in self._txs:
            raise LedgerNotFound("transaction", tx_id)
        return self._txs[tx_id]

    def verify(self) -> Any:
        raise LedgerUnsupported("the in-memory test ledger keeps no verifiable chain")

    def close(self) -> None:
        pass


ORGS = (PROVIDER, CUSTOMER, "AuditorMSP")


def embedded_ledger(data_dir: Path, extra_orgs: tuple[str, ...] = ()) -> Any:
    """The hub's embedded ledger, endorsing with org keys on the test SoftHSM2 token (PKCS#11); `extra_orgs`
    are orgs beyond ORGS that get keys too (a second customer)."""
    from tests.helpers.embedded import contract_ledger

    return contract_ledger(data_dir, orgs=(*ORGS, *extra_orgs))


class ControlledLedger:
    """Wraps a real ledger. Every call goes through to it unless a fault is armed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.submits: Counter[str] = Counter()
        self.usage_batches: list[int] = []
        self.fail_before: list[LedgerError] = []  # raised instead of submitting (nothing written)
        self.fail_after: list[str] = []  # "unknown": commit, then raise CommitStatusUnknown
        self.gate: threading.Event | None = None  # when set to an Event, submits wait for it
        self.hide_tx = False  # tx(tx_id) raises LedgerNotFound, as if the commit could not be looked up
        self.entered = threading.Event()

    @property
    def network_id(self) -> str:
        return self.inner.network_id

    def evaluate(self, fn: str, args: Any = (), *, as_org: str) -> bytes:
        return self.inner.evaluate(fn, args, as_org=as_org)

    def submit(self, fn: str, args: Any = (), *, as_org: str,
               transient: Mapping[str, bytes] | None = None) -> Commit:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(60), "test gate never opened"
        if self.fail_before:
            raise self.fail_before.pop(0)
        commit = self.inner.submit(fn, args, as_org=as_org, transient=transient)
        self.submits[fn] += 1
        if fn == "RecordUsage":
            self.usage_batches.append(len(json.loads(args[0])["messages"]))
        if self.fail_after:
            self.fail_after.pop(0)
            raise CommitStatusUnknown(commit.tx_id, "connection lost after submit (injected)")
        return commit

    def events(self, since_block: int = 0, *, timeout: float | None = None) -> Iterator[ChaincodeEvent]:
        return self.inner.events(since_block, timeout=timeout)

    def height(self) -> int:
        return self.inner.height()

    def block(self, number: int) -> BlockRecord:
        return self.inner.block(number)

    def tx(self, tx_id: str) -> TransactionRecord:
        if self.hide_tx:
            raise LedgerNotFound("transaction", tx_id)
        return self.inner.tx(tx_id)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        """The rest of the Ledger interface (endorse, block_header, verify, ...) goes straight through."""
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


# the parties' master data a deployed hub is configured with (e-invoices need the seller's VAT id)
MASTER_DATA = {
    "ProviderMSP": {"name": "MedLease GmbH", "country": "DE", "vat_id": "DE123456788"},
    "CustomerMSP": {"name": "Klinikum Mitte", "country": "DE", "vat_id": "DE987654328"},
}


def hub_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "tokens": {k: TokenGrant(**v) for k, v in TOKENS.items()},
        "scheduler_enabled": False,
        "parties": MASTER_DATA,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def hub_client(settings: Settings, ledger: Any, **app_kwargs: Any) -> Iterator[TestClient]:
    from hub.api.app import create_app

    app = create_app(settings, ledger, **app_kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def setup_contract(client: TestClient, key: DeviceKey | None = None, **overrides: Any) -> dict[str, Any]:
    """Register the asset(s), propose and accept the sample contract through the API."""
    key = key or make_device_key()
    _period, start = last_month()
    contract = sample_contract(start=start, **overrides)
    for asset_id in contract["assets"]:
        r = client.post("/v1/assets", json=sample_asset(key, asset_id), headers=auth("tok-provider"))
        assert r.status_code == 201, r.text
    r = client.post("/v1/contracts", json=contract, headers=auth("tok-provider"))
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/contracts/{contract['id']}/accept", headers=auth("tok-customer"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ACTIVE"
    return r.json()


def usage(key: DeviceKey, message_id: str, readings: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return signed_message(key, readings, message_id=message_id, **kw)


def body_of(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message).encode()


def post_usage(client: TestClient, message: Mapping[str, Any], token: str = "tok-device",
               **params: Any) -> Any:
    return client.post("/v1/usage", json=dict(message), headers=auth(token), params=params or None)
