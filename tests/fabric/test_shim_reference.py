"""Our shim against Fabric's reference shim (fabric-chaincode-go v2.3.0, chaincode-as-a-service mode).

The same fake peer drives a small Go chaincode and the equivalent Python contract on our shim; the wire
exchanges must match: REGISTER, state calls, range paging and closing, metadata writes, COMPLETED with
events and error statuses, KEEPALIVE. And the key-level endorsement policy bytes we build must be identical
to fabric-chaincode-go's `statebased` package, which is what peers are tested against.

Needs the Go toolchain with fabric-chaincode-go v2.3.0 and its dependencies in the module cache (or a
reachable GOPROXY); otherwise it skips with the build error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chaincode.errors import ChaincodeError
from chaincode.shim import ChaincodeServer, ServerConfig, key_policy_bytes
from chaincode.stub import Stub
from tests.helpers.fake_peer import CCM, FakePeer
from tests.helpers.goref import build_reference

pytestmark = pytest.mark.fabric

STATE = {f"k{i}": str(i).encode() for i in range(5)}
ORG_SETS = [["ProviderMSP", "CustomerMSP"], ["CustomerMSP"], ["ProviderMSP", "CustomerMSP", "AuditorMSP"]]
OPS: list[tuple[str, list[bytes]]] = [
    ("put", [b"k", b"v"]),
    ("del", [b"k1"]),
    ("get", [b"k1"]),
    ("get", [b"nope"]),
    ("range", [b"k1", b"k4"]),
    ("range", [b"", b""]),
    *(("endorse", [b"inv", *(o.encode() for o in orgs)]) for orgs in ORG_SETS),
    ("refuse", []),
]


def python_contract(stub: Stub, fn: str, args: Sequence[bytes]) -> bytes:
    a = [x.decode() for x in args]
    if fn == "put":
        stub.put_state(a[0], a[1].encode())
        stub.set_event("Put", a[0].encode())
        return b"ok"
    if fn == "del":
        stub.del_state(a[0])
        return b"ok"
    if fn == "get":
        return stub.get_state(a[0]) or b"<none>"
    if fn == "range":
        return "".join(f"{k}={v.decode()};" for k, v in stub.get_state_by_range(a[0], a[1])).encode()
    if fn == "endorse":
        stub.set_key_endorsement(a[0], a[1:])
        return key_policy_bytes(a[1:])
    raise ChaincodeError("period_closed", "refused")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def go_chaincode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reference("chaincode", tmp_path_factory.mktemp("ref-chaincode"))


def _drive(address: str) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    with FakePeer(address, state=STATE, page_size=2) as peer:
        out.append(("register", peer.chaincode_name))
        for n, (fn, args) in enumerate(OPS):
            result = peer.invoke(fn, args, tx_id=f"tx{n}")
            response = result.response
            event = result.message.chaincode_event
            out.append(
                (
                    fn,
                    [CCM.Type.Name(t) for t in result.requests],
                    CCM.Type.Name(result.message.type),
                    response.status,
                    response.payload,
                    result.writes,
                    result.metadata,
                    (event.event_name, event.payload),
                )
            )
        peer.send(CCM(type=CCM.KEEPALIVE))
        out.append(("keepalive", CCM.Type.Name(peer.keepalive_echoes.get(timeout=30).type)))
    return out


@pytest.fixture(scope="module")
def reference_exchanges(go_chaincode: Path) -> Iterator[list[tuple[object, ...]]]:
    port = _free_port()
    env = dict(os.environ, CHAINCODE_ID="cc:1", CHAINCODE_SERVER_ADDRESS=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [str(go_chaincode)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "reference chaincode exited"
            time.sleep(0.05)
        yield _drive(f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_wire_exchanges_match_the_reference_shim(reference_exchanges: list[tuple[object, ...]]) -> None:
    srv = ChaincodeServer(python_contract, ServerConfig("cc:1", "127.0.0.1:0"))
    srv.start()
    try:
        ours = _drive(f"127.0.0.1:{srv.port}")
    finally:
        srv.stop(grace=None)
    assert len(ours) == len(reference_exchanges)
    for mine, theirs in zip(ours, reference_exchanges, strict=True):
        if mine[0] == "refuse":  # same status and shape; the message text is the contract's own
            assert (mine[1], mine[2], mine[3]) == (theirs[1], theirs[2], theirs[3]) == ([], "COMPLETED", 409)
            continue
        assert mine == theirs


def test_key_policy_bytes_equal_fabric_statebased(reference_exchanges: list[tuple[object, ...]]) -> None:
    policies = [entry[4] for entry in reference_exchanges if entry[0] == "endorse"]
    assert policies == [key_policy_bytes(orgs) for orgs in ORG_SETS]
