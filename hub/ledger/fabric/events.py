"""Chaincode events from the Fabric gateway's ChaincodeEvents stream, as bounded polls (ADR 0038).

Fabric's gateway keeps a cancelled ChaincodeEvents stream open until the next block with a chaincode
event, so a stream per poll on an idle chain (or with the orderer down) piles up until the peer refuses
every call ("exceeding concurrency limit") and no block can come any more. So a poll from the chain's last
block that got that block's events is remembered with the height; the same poll at the same height answers
from that memory (blocks never change) and opens no stream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc
from fabric_protos.gateway import gateway_pb2

from hub.ledger.base import ChaincodeEvent, LedgerUnavailable
from hub.ledger.fabric.rpcstatus import gateway_error

_END = object()
MEMORY = 64  # drained polls remembered (all are dropped when more pile up)

Key = tuple[str, int, str]  # (org, since block, after tx id)


class EventPolls:
    """`open_stream(org, since_block, after_tx_id)` opens a ChaincodeEvents call; `height_of(org)` is
    that org's peer height, or None when it cannot say."""

    def __init__(
        self,
        open_stream: Callable[[str, int, str], grpc.Call],
        height_of: Callable[[str], int | None],
    ) -> None:
        self._open = open_stream
        self._height_of = height_of
        self._lock = threading.Lock()
        self._drained: dict[Key, tuple[int, tuple[ChaincodeEvent, ...]]] = {}

    def events(
        self, org: str, since_block: int, *, timeout: float | None, after_tx_id: str = ""
    ) -> Iterator[ChaincodeEvent]:
        """With a `timeout`, a poll that ends once no event came for `timeout` seconds."""
        key = (org, since_block, after_tx_id)
        height = self._height_of(org) if timeout is not None else None
        cached = self._drained.get(key)
        if height is not None and cached is not None and cached[0] == height:
            yield from cached[1]
            time.sleep(timeout or 0.0)  # the wait for a new event an open stream would have made
            return
        seen: list[ChaincodeEvent] = []
        call = self._open(org, since_block, after_tx_id)
        inbox: queue.Queue[object] = queue.Queue()

        def pump() -> None:
            try:
                for response in call:
                    inbox.put(response)
            except grpc.RpcError as err:
                inbox.put(err)
            finally:
                inbox.put(_END)

        threading.Thread(target=pump, daemon=True, name="fabric-events").start()
        try:
            while True:
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = _END  # read to the end of the chain as it was when the poll began
                if item is _END:
                    self._remember(key, height, since_block, seen)
                    return
                if isinstance(item, grpc.RpcError):
                    ge = gateway_error(item)
                    if ge.code == grpc.StatusCode.CANCELLED:
                        return
                    raise LedgerUnavailable(f"event stream broke: {ge}")
                assert isinstance(item, gateway_pb2.ChaincodeEventsResponse)
                for ev in item.events:
                    seen.append(ChaincodeEvent(item.block_number, ev.tx_id, ev.event_name, ev.payload))
                    yield seen[-1]
        finally:
            call.cancel()

    def _remember(self, key: Key, height: int | None, since_block: int, seen: list[ChaincodeEvent]) -> None:
        """Only with proof the stream read the whole chain: the last block's events."""
        if height == since_block + 1 and seen and all(e.block == since_block for e in seen):
            with self._lock:
                if len(self._drained) > MEMORY:
                    self._drained.clear()
                self._drained[key] = (height, tuple(seen))
