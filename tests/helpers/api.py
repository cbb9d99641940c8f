"""Fixtures and builders for the hub API tests.

- `TOKENS`: one bearer token per role and org (plus an unrelated org, to test visibility);
- `InMemoryLedger`: the Ledger protocol over the *real* contract (`chaincode.contract.invoke`) on an
  `InMemoryWorld`: for fault injection (`fail_next`) and for counting ledger writes;
- `open_test_ledger`: the real embedded ledger when it is available, else `InMemoryLedger`;
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
    LedgerError,
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
        return self._blocks[number]

    def tx(self, tx_id: str) -> TransactionRecord:
        return self._txs[tx_id]

    def close(self) -> None:
        pass


def hub_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "tokens": {k: TokenGrant(**v) for k, v in TOKENS.items()},
        "scheduler_enabled": False,
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


