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
import shutil
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

pytestmark = pytest.mark.fabric

GO_MOD = """module example.com/refcc

go 1.22.0

require github.com/hyperledger/fabric-chaincode-go/v2 v2.3.0
"""

GO_MAIN = r"""package main

import (
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/statebased"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

type cc struct{}

func (c *cc) Init(stub shim.ChaincodeStubInterface) *peer.Response { return shim.Success(nil) }

func (c *cc) Invoke(stub shim.ChaincodeStubInterface) *peer.Response {
	fn, args := stub.GetFunctionAndParameters()
	switch fn {
	case "put":
		if err := stub.PutState(args[0], []byte(args[1])); err != nil {
			return shim.Error(err.Error())
		}
		stub.SetEvent("Put", []byte(args[0]))
		return shim.Success([]byte("ok"))
	case "del":
		if err := stub.DelState(args[0]); err != nil {
			return shim.Error(err.Error())
		}
		return shim.Success([]byte("ok"))
	case "get":
		v, err := stub.GetState(args[0])
		if err != nil {
			return shim.Error(err.Error())
		}
		if v == nil {
			return shim.Success([]byte("<none>"))
		}
		return shim.Success(v)
	case "range":
		it, err := stub.GetStateByRange(args[0], args[1])
		if err != nil {
			return shim.Error(err.Error())
		}
		defer it.Close()
		out := ""
		for it.HasNext() {
			kv, err := it.Next()
			if err != nil {
				return shim.Error(err.Error())
			}
			out += kv.Key + "=" + string(kv.Value) + ";"
		}
		return shim.Success([]byte(out))
	case "endorse":
		ep, err := statebased.NewStateEP(nil)
		if err != nil {
			return shim.Error(err.Error())
		}
		if err := ep.AddOrgs(statebased.RoleTypePeer, args[1:]...); err != nil {
			return shim.Error(err.Error())
		}
		pol, err := ep.Policy()
		if err != nil {
			return shim.Error(err.Error())
		}
		if err := stub.SetStateValidationParameter(args[0], pol); err != nil {
			return shim.Error(err.Error())
		}
		return shim.Success(pol)
	case "refuse":
		return &peer.Response{Status: 409, Message: "refused"}
	}
	return shim.Error("unknown " + fn)
}

func main() {
	server := &shim.ChaincodeServer{
		CCID:     os.Getenv("CHAINCODE_ID"),
		Address:  os.Getenv("CHAINCODE_SERVER_ADDRESS"),
		CC:       &cc{},
		TLSProps: shim.TLSProperties{Disabled: true},
	}
	if err := server.Start(); err != nil {
		os.Exit(1)
	}
}
"""

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
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain")
    src = tmp_path_factory.mktemp("refcc")
    (src / "go.mod").write_text(GO_MOD)
    (src / "main.go").write_text(GO_MAIN)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    env.setdefault("GOPROXY", "off")  # the module cache only, unless the caller allows a proxy
    for argv in ([go, "mod", "tidy"], [go, "build", "-o", "refcc", "."]):
        proc = subprocess.run(
            argv, cwd=src, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot build the fabric-chaincode-go reference: {proc.stderr.strip()[-400:]}")
    return src / "refcc"


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
