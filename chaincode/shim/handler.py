"""One Connect stream between a peer and this chaincode: registration, routing, transactions.

Why it is shaped like this (the defects of fabric-chaincode-python it avoids, see ADR 0011):
* gRPC allows one writer per stream. Every outgoing message goes through one queue that the stream's
  response generator drains, so concurrent transactions can never write at once.
* Transactions run in a worker pool, many at a time; the peer's answers to their state requests are routed
  back by (channel, txid) to the one transaction waiting for them.
* KEEPALIVE is echoed, and the chaincode event set by the contract travels in COMPLETED.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor

from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2, proposal_response_pb2

from chaincode.errors import ChaincodeError
from chaincode.shim.stub import Capabilities, PeerError, PeerStub, ProposalContext
from chaincode.stub import Stub

log = logging.getLogger(__name__)
CCM = chaincode_shim_pb2.ChaincodeMessage
Invoke = Callable[[Stub, str, Sequence[bytes]], bytes]

_CLOSED = object()  # sentinel: stream ended while a transaction waited for the peer


class StreamHandler:
    """The chaincode side of one Connect stream. `messages()` is what the gRPC servicer returns."""

    def __init__(
        self, invoke: Invoke, chaincode_id: str, executor: Executor, *, answer_timeout: float = 120.0
    ) -> None:
        # the peer gives up on a transaction after chaincode.executetimeout (30 s) and then never answers
        # it again: a worker waiting longer than this is released with an error instead of leaking
        self._answer_timeout = answer_timeout
        self._invoke = invoke
        self._chaincode_id = chaincode_id
        self._executor = executor
        self._outbound: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], queue.Queue[object]] = {}
        self._closed = False
        self.state = "created"
        self.capabilities = Capabilities()
        self.ready = threading.Event()

    # --- the single writer ---------------------------------------------------------------------
    def send(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        self._outbound.put(msg)

    def messages(self) -> Iterator[chaincode_shim_pb2.ChaincodeMessage]:
        """Yield everything to send, REGISTER first, until the stream closes."""
        register = chaincode_pb2.ChaincodeID(name=self._chaincode_id)
        yield CCM(type=CCM.REGISTER, payload=register.SerializeToString())
        while True:
            item = self._outbound.get()
            if item is _CLOSED:
                return
            assert isinstance(item, CCM)
            yield item

    # --- the reader ---------------------------------------------------------------------------
    def serve(self, incoming: Iterable[chaincode_shim_pb2.ChaincodeMessage]) -> None:
        """Read the peer's messages until the stream ends (run this in its own thread)."""
        try:
            for msg in incoming:
                self._dispatch(msg)
        except Exception as exc:
            log.info("chaincode stream ended: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        """Fail every waiting transaction and end the outgoing stream."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._pending.values())
        log.info("peer stream closed (%d transactions were waiting)", len(waiting))
        for slot in waiting:
            slot.put(_CLOSED)
        self._outbound.put(_CLOSED)

    def _dispatch(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        kind = msg.type
        if kind == CCM.KEEPALIVE:
            self.send(msg)  # the peer measures liveness by our echo
        elif kind in (CCM.RESPONSE, CCM.ERROR):
            with self._lock:
                slot = self._pending.get((msg.channel_id, msg.txid))
            if slot is None:
                log.warning("answer for unknown transaction %s/%s dropped", msg.channel_id, msg.txid[:8])
            else:
                slot.put(msg)
        elif kind in (CCM.TRANSACTION, CCM.INIT):
            if self.state != "ready":
                self._fail(msg, f"transaction before READY (state {self.state})")
                return
            self._executor.submit(self._run_transaction, msg)
        elif kind == CCM.REGISTERED:
            self.state = "established"
        elif kind == CCM.READY:
            self._on_ready(msg)
        else:
            log.warning("unexpected %s from peer", CCM.Type.Name(kind))
            if msg.txid:
                self._fail(msg, f"unexpected message {CCM.Type.Name(kind)}")

    def _on_ready(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        if msg.payload:
            params = chaincode_pb2.ChaincodeAdditionalParams.FromString(msg.payload)
            # like the Go shim: the peer may announce a smaller size than it accepts; 100 is the floor
            self.capabilities = Capabilities(
                use_write_batch=params.use_write_batch,
                max_size_write_batch=max(params.max_size_write_batch, 100),
                use_get_multiple_keys=params.use_get_multiple_keys,
                max_size_get_multiple_keys=max(params.max_size_get_multiple_keys, 100),
            )
        caps = self.capabilities
        # what the peer allows decides the number of round trips per transaction: one per key without
        # write batching / GET_STATE_MULTIPLE (peer core.yaml chaincode.runtimeParams, ADR 0033)
        log.info(
            "peer READY: write batch %s (max %d), get multiple keys %s (max %d)",
            "on" if caps.use_write_batch else "off", caps.max_size_write_batch,
            "on" if caps.use_get_multiple_keys else "off", caps.max_size_get_multiple_keys,
        )
        self.state = "ready"
        self.ready.set()

    def _fail(self, msg: chaincode_shim_pb2.ChaincodeMessage, text: str) -> None:
        self.send(CCM(type=CCM.ERROR, payload=text.encode(), txid=msg.txid, channel_id=msg.channel_id))

    # --- one transaction (in a worker thread) ---------------------------------------------------
    def _call(self, slot: queue.Queue[object], channel: str, txid: str, kind: int, payload: bytes) -> bytes:
        self.send(CCM(type=kind, payload=payload, txid=txid, channel_id=channel))
        try:
            answer = slot.get(timeout=self._answer_timeout)
        except queue.Empty:
            raise PeerError(f"no answer from the peer to {CCM.Type.Name(kind)}") from None
        if answer is _CLOSED:
            raise PeerError("connection to the peer closed")
        assert isinstance(answer, CCM)
        if answer.type == CCM.ERROR:
            raise PeerError(answer.payload.decode("utf-8", "replace"))
        return answer.payload

    def _run_transaction(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        key = (msg.channel_id, msg.txid)
        slot: queue.Queue[object] = queue.Queue()
        with self._lock:
            if self._closed:
                return
            if key in self._pending:
                duplicate = True
            else:
                duplicate = False
                self._pending[key] = slot
        if duplicate:
            self._fail(msg, f"transaction {msg.txid} already running")
            return
        try:
            self.send(self._execute(msg, slot))
        except Exception:
            log.exception("transaction %s failed outside the contract", msg.txid[:8])
            self._fail(msg, "chaincode internal error")
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def _execute(
        self, msg: chaincode_shim_pb2.ChaincodeMessage, slot: queue.Queue[object]
    ) -> chaincode_shim_pb2.ChaincodeMessage:
        channel, txid = msg.channel_id, msg.txid
        spec = chaincode_pb2.ChaincodeInput.FromString(msg.payload)
        context = ProposalContext.from_signed_proposal(msg.proposal) if msg.HasField("proposal") else None
        stub = PeerStub(
            lambda kind, payload: self._call(slot, channel, txid, kind, payload),
            channel_id=channel,
            tx_id=txid,
            context=context,
            capabilities=self.capabilities,
        )
        event = None
        if not spec.args:
            response = proposal_response_pb2.Response(
                status=400, message=ChaincodeError("unknown_function", "no function named").to_json()
            )
        else:
            fn = spec.args[0].decode("utf-8", "replace")
            try:
                try:
                    payload = self._invoke(stub, fn, list(spec.args[1:]))
                finally:
                    stub.finish_iterators()
                stub.flush()
                response = proposal_response_pb2.Response(status=200, payload=payload)
                event = stub.event
            except ChaincodeError as err:
                response = proposal_response_pb2.Response(status=err.status, message=err.to_json())
            except PeerError as err:
                response = proposal_response_pb2.Response(status=500, message=f"peer refused: {err}")
            except Exception as err:
                log.exception("contract raised in %s", fn)
                response = proposal_response_pb2.Response(status=500, message=f"internal error: {err!r}")
        stub.finish()
        if msg.type == CCM.INIT and response.status >= 400:
            return CCM(type=CCM.ERROR, payload=response.message.encode(), txid=txid, channel_id=channel)
        out = CCM(type=CCM.COMPLETED, payload=response.SerializeToString(), txid=txid, channel_id=channel)
        if event is not None:
            out.chaincode_event.CopyFrom(event)
        return out
