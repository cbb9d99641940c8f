"""The in-memory `Stub` the contract's unit tests run on behaves like a Fabric peer's simulator where the
contract can tell: own writes visible to later reads, range scans over committed state only, deletes,
history newest first with delete markers, transient data, key-level endorsement, nothing applied until
commit."""

from __future__ import annotations

import datetime as dt

import pytest

from chaincode.stub import InMemoryStub, InMemoryWorld, create_composite_key

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)


def stub(world: InMemoryWorld, tx: str, minutes: int = 0, **kw: object) -> InMemoryStub:
    return InMemoryStub(world, tx_id=tx, timestamp=T0 + dt.timedelta(minutes=minutes),
                        creator_msp_id="ProviderMSP", **kw)  # type: ignore[arg-type]


def test_writes_are_seen_by_the_same_transaction_and_applied_only_on_commit() -> None:
    world = InMemoryWorld()
    s = stub(world, "tx-1")
    s.put_state("a", b"1")
    assert s.get_state("a") == b"1" and s.get_multiple_states(["a", "b"]) == [b"1", None]
    assert list(s.get_state_by_range("", "")) == []  # a range sees committed state only (as in Fabric)
    assert world.value("a") is None
    s.commit()
    assert world.value("a") == b"1"
    failed = stub(world, "tx-2")
    failed.put_state("a", b"2")  # never committed: a refused transaction writes nothing
    assert world.value("a") == b"1"


def test_delete_history_and_markers() -> None:
    world = InMemoryWorld()
    for i, value in enumerate([b"v1", b"v2"]):
        s = stub(world, f"tx-{i}", minutes=i)
        s.put_state("k", value)
        s.commit()
    d = stub(world, "tx-del", minutes=5)
    d.del_state("k")
    assert d.get_state("k") is None  # the transaction's own delete is visible to it
    assert d.writes == [("k", None)]
    d.commit()
    assert world.value("k") is None
    history = list(stub(world, "tx-read").get_history_for_key("k"))
    assert [(m.tx_id, m.value, m.is_delete) for m in history] == [
        ("tx-del", b"", True), ("tx-1", b"v2", False), ("tx-0", b"v1", False)]
    assert [m.timestamp for m in history] == [T0 + dt.timedelta(minutes=m) for m in (5, 1, 0)]


def test_ranges_and_partial_composite_keys_in_byte_order() -> None:
    world = InMemoryWorld()
    s = stub(world, "tx-1")
    keys = [create_composite_key("reading", ["c1", p, r]) for p, r in
            [("2026-11", "r2"), ("2026-11", "r1"), ("2026-12", "r1")]]
    for k in keys:
        s.put_state(k, k.encode())
    s.put_state("plain-b", b"b")
    s.put_state("plain-a", b"a")
    s.commit()
    scan = stub(world, "tx-2")
    assert [k for k, _ in scan.get_state_by_range("plain-", "plain-~")] == ["plain-a", "plain-b"]
    nov = [k for k, _ in scan.get_state_by_partial_composite_key("reading", ["c1", "2026-11"])]
    assert nov == sorted(keys[:2], key=str.encode)
    assert len(list(scan.get_state_by_partial_composite_key("reading", ["c1"]))) == 3


def test_transient_data_event_and_context() -> None:
    s = stub(InMemoryWorld(), "tx-9", transient={"secret": b"x"}, creator_cert=b"PEM")
    assert s.transient() == {"secret": b"x"} and s.creator_cert() == b"PEM"
    got = s.transient()
    got["secret"] = b"changed"  # a copy: the transaction's transient map cannot be altered through it
    assert s.transient()["secret"] == b"x"
    context = (s.tx_id, s.channel_id, s.creator_msp_id(), s.tx_timestamp())
    assert context == ("tx-9", "billing", "ProviderMSP", T0)
    with pytest.raises(ValueError):
        s.set_event("", b"")
    s.set_event("InvoiceIssued", b"{}")
    assert s.event == ("InvoiceIssued", b"{}")


def test_key_level_endorsement_survives_later_writes() -> None:
    world = InMemoryWorld()
    s = stub(world, "tx-1")
    s.put_state("inv", b"1")
    s.set_key_endorsement("inv", ["CustomerMSP", "ProviderMSP", "CustomerMSP"])
    assert s.get_key_endorsement("inv") == ["CustomerMSP", "ProviderMSP"]
    s.commit()
    later = stub(world, "tx-2")
    later.put_state("inv", b"2")
    later.commit()
    assert stub(world, "tx-3").get_key_endorsement("inv") == ["CustomerMSP", "ProviderMSP"]
    assert stub(world, "tx-3").get_key_endorsement("other") is None


def test_bad_writes_and_naive_timestamps_are_refused() -> None:
    s = stub(InMemoryWorld(), "tx-1")
    with pytest.raises(ValueError):
        s.put_state("", b"x")
    with pytest.raises(TypeError):
        s.put_state("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InMemoryStub(InMemoryWorld(), tx_id="t", timestamp=dt.datetime(2026, 1, 1), creator_msp_id="P")
