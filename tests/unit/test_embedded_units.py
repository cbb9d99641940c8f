"""Embedded ledger pieces that need no database: encodings, read-write sets, the simulator's recording,
the overlay used inside a block, and the endorsement rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pytest

from chaincode.errors import ChaincodeError
from chaincode.stub import KeyModification, Stub, create_composite_key
from hub.ledger.base import ChaincodeRejected, EndorsementFailed
from hub.ledger.embedded.blocks import GenesisConfig, Header, data_hash, encode_header
from hub.ledger.embedded.codec import DecodeError, canonical, frame, key_bytes, unframe
from hub.ledger.embedded.endorsement import policy_satisfied, required_orgs, simulate
from hub.ledger.embedded.rwset import Entry, RangeRead, RWSet
from hub.ledger.embedded.simulator import SimulationStub
from hub.ledger.embedded.transaction import Envelope, Proposal, Response, make_tx_id
from hub.ledger.embedded.validator import Overlay, _range_unchanged

pytestmark = pytest.mark.unit

P, C, A = "ProviderMSP", "CustomerMSP", "AuditorMSP"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class DictReader:
    """Committed state as a dict; keys iterate in code-point order like the SQLite store."""

    def __init__(self, state: dict[str, Entry]) -> None:
        self.state = state
        self.range_calls = 0

    def get(self, key: str) -> Entry | None:
        return self.state.get(key)

    def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.state.get(k) for k in keys]

    def range(self, start: str, end: str) -> Iterator[tuple[str, Entry]]:
        self.range_calls += 1
        for k in sorted(self.state):
            if k >= start and (not end or k < end):
                yield k, self.state[k]

    def history(self, key: str) -> Iterator[KeyModification]:
        return iter(())


def proposal(fn: str = "f", msp: str = P) -> Proposal:
    return Proposal.new("net", fn, [b"{}"], msp, CERT, dt.datetime(2026, 11, 5, 12, 0, tzinfo=dt.UTC))


def test_frame_round_trip_and_truncation() -> None:
    parts = [b"", b"abc", bytes(range(256))]
    data = frame(parts)
    assert unframe(data) == parts
    for bad in (data[:-1], data + b"x", b"XXXX" + data[4:], b""):
        with pytest.raises(DecodeError):
            unframe(bad)


def test_canonical_json_is_sorted_compact_and_keeps_nul() -> None:
    key = create_composite_key("reading", ["c", "2026-11"])
    assert canonical({"b": 1, "a": [key]}) == b'{"a":["\\u0000reading\\u0000c\\u00002026-11\\u0000"],"b":1}'
    assert key_bytes(key) == key.encode()
    with pytest.raises(ValueError):
        key_bytes("\ud800")


def test_proposal_tx_id_and_round_trip() -> None:
    p = proposal()
    assert len(p.nonce) == 24
    assert p.tx_id == make_tx_id(p.nonce, p.creator)
    assert Proposal.decode(p.encode()) == p
    assert p.datetime() == dt.datetime(2026, 11, 5, 12, 0, tzinfo=dt.UTC)
    assert proposal().tx_id != p.tx_id  # fresh nonce each time


def test_rwset_and_response_round_trip() -> None:
    rw = RWSet(
        reads={"b": (3, 1), "a": None},
        ranges=[RangeRead("a", "z", [("a", (1, 0))], exhausted=True)],
        writes={"z": b"\x00\xff", "y": None},
        metadata={"z": (C, P)},
    )
    assert RWSet.from_json(rw.to_json()) == rw
    assert rw.written_keys() == ["y", "z"]
    resp = Response(b"\x01" * 32, 200, b"out", ("Ev", b"p"), rw)
    assert Response.decode(resp.encode()) == resp
    assert Response.decode(resp.encode()).encode() == resp.encode()
    with pytest.raises(DecodeError):
        Response.decode(b'{"status": 200}')
    env = Envelope(b"prop", b"sig", resp.encode(), ())
    assert Envelope.decode(env.encode()) == env


def test_header_and_genesis_round_trip() -> None:
    dh = data_hash([b"a", b"b"])
    assert dh != data_hash([b"b", b"a"]) and dh != data_hash([b"ab"])
    hdr = Header.decode(encode_header(7, b"\x01" * 32, dh))
    assert hdr == Header(7, b"\x01" * 32, dh)
    g = GenesisConfig("net", {P: [CERT]}, (P, C), "billing")
    assert GenesisConfig.decode(g.encode()) == g


def test_simulator_records_reads_writes_and_sees_own_writes() -> None:
    reader = DictReader({"a": Entry(b"1", (1, 0)), "b": Entry(b"2", (2, 3), (C, P))})
    stub = SimulationStub(reader, proposal())
    assert stub.get_state("a") == b"1"
    assert stub.get_state("missing") is None
    stub.put_state("a", b"9")
    assert stub.get_state("a") == b"9"  # own write, read set keeps the committed version
    stub.put_state("n", b"new")
    assert stub.get_multiple_states(["n", "b", "x"]) == [b"new", b"2", None]
    stub.del_state("b")
    assert stub.get_state("b") is None
    assert stub.get_key_endorsement("b") == [C, P]
    stub.set_key_endorsement("n", [P, C, P])
    assert stub.get_key_endorsement("n") == [C, P]
    assert stub.rwset.reads == {"a": (1, 0), "missing": None, "b": (2, 3), "x": None}
    assert stub.rwset.writes == {"a": b"9", "n": b"new", "b": None}
    assert stub.rwset.metadata == {"n": (C, P)}
    with pytest.raises(ValueError):
        stub.put_state("", b"x")
    with pytest.raises(TypeError):
        stub.put_state("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        stub.set_key_endorsement("k", [])


def test_simulator_is_a_stub() -> None:
    assert isinstance(SimulationStub(DictReader({}), proposal()), Stub)


def test_simulator_ranges_record_what_was_consumed() -> None:
    reader = DictReader({k: Entry(b"v", (1, i)) for i, k in enumerate(["a1", "a2", "a3", "b1"])})
    stub = SimulationStub(reader, proposal())
    stub.put_state("a0", b"own")  # ranges see committed state only
    assert [k for k, _ in stub.get_state_by_range("a", "b")] == ["a1", "a2", "a3"]
    partial = stub.get_state_by_range("a", "")
    assert next(partial)[0] == "a1"
    stub.finish()
    full, cut = stub.rwset.ranges
    assert full.exhausted and full.results == [("a1", (1, 0)), ("a2", (1, 1)), ("a3", (1, 2))]
    assert not cut.exhausted and cut.results == [("a1", (1, 0))]


def test_overlay_merges_pending_writes_in_key_order() -> None:
    base = DictReader({"a": Entry(b"1", (1, 0)), "c": Entry(b"3", (1, 1)), "e": Entry(b"5", (1, 2))})
    view = Overlay(base)
    view.pending.update(
        {"b": Entry(b"2", (2, 0)), "c": None, "e": Entry(b"55", (2, 1)), "z": Entry(b"z", (2, 2))}
    )
    assert [(k, e.value) for k, e in view.range("a", "f")] == [("a", b"1"), ("b", b"2"), ("e", b"55")]
    assert [k for k, _ in view.range("", "")] == ["a", "b", "e", "z"]
    assert view.get("c") is None and view.get("a") == Entry(b"1", (1, 0))
    assert [e.value if e else None for e in view.get_many(["e", "c", "a", "q"])] == [b"55", None, b"1", None]


def test_range_validation_detects_phantoms_and_respects_partial_scans() -> None:
    base = DictReader({"a1": Entry(b"", (1, 0)), "a3": Entry(b"", (1, 1))})
    view = Overlay(base)
    full = RangeRead("a", "b", [("a1", (1, 0)), ("a3", (1, 1))], exhausted=True)
    partial = RangeRead("a", "b", [("a1", (1, 0))], exhausted=False)
    assert _range_unchanged(view, full) and _range_unchanged(view, partial)
    view.pending["a4"] = Entry(b"", (2, 0))  # after the partial scan's last key: invisible to it
    assert not _range_unchanged(view, full) and _range_unchanged(view, partial)
    view.pending["a0"] = Entry(b"", (2, 1))  # before it: a phantom for both
    assert not _range_unchanged(view, partial)
    view.pending.clear()
    view.pending["a1"] = Entry(b"x", (2, 2))  # an updated version
    assert not _range_unchanged(view, full)


def test_endorsement_rule() -> None:
    cc = (P, C)
    plain = RWSet(writes={"usage": b"1"})
    locked = RWSet(writes={"inv": b"1"})
    mixed = RWSet(writes={"inv": b"1", "usage": b"2"})
    meta_only = RWSet(metadata={"inv": (P,)})
    policies = {"inv": (P, C)}
    policy_of = policies.get
    avail = [P, C, A]
    assert required_orgs(P, cc, plain, policy_of, avail) == [P]
    assert required_orgs(C, cc, locked, policy_of, avail) == [C, P]
    assert required_orgs(A, cc, plain, policy_of, avail) == [P]
    assert required_orgs(A, cc, locked, policy_of, avail) == [P, C]
    assert required_orgs(P, cc, RWSet(), policy_of, avail) == [P]
    assert required_orgs(C, cc, meta_only, policy_of, avail) == [C, P]
    with pytest.raises(EndorsementFailed):
        required_orgs(A, cc, plain, policy_of, [A])
    assert policy_satisfied({P}, plain, policy_of, cc)[0]
    assert policy_satisfied({C}, plain, policy_of, cc)[0]
    assert not policy_satisfied({A}, plain, policy_of, cc)[0]
    assert not policy_satisfied({P}, locked, policy_of, cc)[0]
    assert policy_satisfied({P, C}, mixed, policy_of, cc)[0]
    assert not policy_satisfied({P, A}, mixed, policy_of, cc)[0]
    assert not policy_satisfied(set(), RWSet(), policy_of, cc)[0]
    # a key-only policy replaces the chaincode policy for that key
    assert policy_satisfied({A}, RWSet(writes={"audit": b""}), {"audit": (A,)}.get, cc)[0]


def test_simulate_maps_refusals_and_crashes() -> None:
    reader = DictReader({})
    prop = proposal()

    def refuse(stub: SimulationStub, fn: str, args: Sequence[bytes]) -> bytes:
        stub.put_state("k", b"v")
        raise ChaincodeError("forbidden", "no")

    def crash(stub: SimulationStub, fn: str, args: Sequence[bytes]) -> bytes:
        raise KeyError("bug")

    def wrong_type(stub: SimulationStub, fn: str, args: Sequence[bytes]) -> bytes:
        return 42  # type: ignore[return-value]

    with pytest.raises(ChaincodeRejected) as info:
        simulate(refuse, reader, prop, prop.encode())
    assert info.value.code == "forbidden"
    with pytest.raises(EndorsementFailed, match="KeyError"):
        simulate(crash, reader, prop, prop.encode())
    with pytest.raises(EndorsementFailed, match="int"):
        simulate(wrong_type, reader, prop, prop.encode())
