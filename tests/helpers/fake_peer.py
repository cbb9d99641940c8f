"""A fake Fabric peer for shim unit tests: dials `Chaincode/Connect` like a real peer does for
chaincode-as-a-service, answers REGISTER, drives TRANSACTIONs and serves state from a dict.

It mirrors the peer's rules that matter to the shim: a transaction reads committed state only (not its own
writes), range and history queries are paged (QUERY_STATE_NEXT with an iterator id, QUERY_STATE_CLOSE), an
ERROR answer fails the state call, and nothing is applied until the test calls `commit`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.ledger.queryresult import kv_query_result_pb2 as kvpb
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
)
from fabric_protos.peer import chaincode_shim_pb2 as pb

CCM = pb.ChaincodeMessage


@dataclass
class TxResult:
    message: pb.ChaincodeMessage  # COMPLETED or ERROR
    writes: dict[str, bytes | None] = field(default_factory=dict)
    metadata: dict[str, dict[str, bytes]] = field(default_factory=dict)
    requests: list[int] = field(default_factory=list)  # message types the chaincode sent

    @property
    def response(self) -> proposal_response_pb2.Response:
        return proposal_response_pb2.Response.FromString(self.message.payload)


@dataclass
class _Tx:
    future: Future[TxResult]
    result: TxResult


def signed_proposal(
    channel: str, tx_id: str, msp_id: str, cert: bytes, timestamp: dt.datetime, transient: Mapping[str, bytes]
) -> proposal_pb2.SignedProposal:
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION, channel_id=channel, tx_id=tx_id
    )
    channel_header.timestamp.FromDatetime(timestamp.astimezone(dt.UTC).replace(tzinfo=None))
    creator = identities_pb2.SerializedIdentity(mspid=msp_id, id_bytes=cert)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(
            creator=creator.SerializeToString(), nonce=os.urandom(24)
        ).SerializeToString(),
    )
    payload = proposal_pb2.ChaincodeProposalPayload(TransientMap=dict(transient))
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return proposal_pb2.SignedProposal(proposal_bytes=proposal.SerializeToString(), signature=b"sig")


class FakePeer:
    """Usage: `with FakePeer(address, state) as peer: result = peer.invoke("fn", [b"arg"])`."""

    def __init__(
        self,
        address: str,
        state: dict[str, bytes] | None = None,
        *,
        params: chaincode_pb2.ChaincodeAdditionalParams | None = None,
        page_size: int = 2,
        fail_keys: Sequence[str] = (),
        send_ready: bool = True,
        channel_options: list[tuple[str, int]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.state: dict[str, bytes] = dict(state or {})
        self.metadata: dict[str, dict[str, bytes]] = {}
        self.history: dict[str, list[kvpb.KeyModification]] = {}
        self.page_size = page_size
        self.fail_keys = set(fail_keys)
        self.keepalive_echoes: queue.Queue[pb.ChaincodeMessage] = queue.Queue()
        self.unsolicited: list[pb.ChaincodeMessage] = []
        self.closed_iterators: list[str] = []
        self.chaincode_name = ""
        self._params = params
        self._send_ready = send_ready
        self._outbound: queue.Queue[pb.ChaincodeMessage | None] = queue.Queue()
        self._txs: dict[tuple[str, str], _Tx] = {}
        self._iterators: dict[str, Iterator[bytes]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=channel_options or [])
        else:
            self._channel = grpc.secure_channel(address, credentials, options=channel_options or [])
        self._call = chaincode_shim_pb2_grpc.ChaincodeStub(self._channel).Connect(self._requests())
        first = next(self._call)
        if first.type != CCM.REGISTER:
            raise AssertionError(f"chaincode spoke {CCM.Type.Name(first.type)} first, not REGISTER")
        self.chaincode_name = chaincode_pb2.ChaincodeID.FromString(first.payload).name
        self.send(CCM(type=CCM.REGISTERED))
        if send_ready:
            self.send_ready()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send_ready(self) -> None:
        payload = self._params.SerializeToString() if self._params else b""
        self.send(CCM(type=CCM.READY, payload=payload))

    def __enter__(self) -> FakePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._outbound.put(None)
        self._call.cancel()
        self._channel.close()
        self._reader.join(timeout=5)

    def send(self, msg: pb.ChaincodeMessage) -> None:
        self._outbound.put(msg)

    def _requests(self) -> Iterator[pb.ChaincodeMessage]:
        while (msg := self._outbound.get()) is not None:
            yield msg

    # --- driving transactions -----------------------------------------------------------------
    def start(
        self,
        fn: str,
        args: Sequence[bytes] = (),
        *,
        tx_id: str | None = None,
        channel: str = "billing",
        msp_id: str = "ProviderMSP",
        cert: bytes = b"-----BEGIN CERTIFICATE-----\n",
        timestamp: dt.datetime | None = None,
        transient: Mapping[str, bytes] | None = None,
        kind: int = CCM.TRANSACTION,
    ) -> Future[TxResult]:
        tx_id = tx_id or os.urandom(16).hex()
        timestamp = timestamp or dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
        future: Future[TxResult] = Future()
        with self._lock:
            self._txs[(channel, tx_id)] = _Tx(future, TxResult(CCM()))
        spec = chaincode_pb2.ChaincodeInput(args=[fn.encode(), *args])
        self.send(
            CCM(
                type=kind,
                payload=spec.SerializeToString(),
                txid=tx_id,
                channel_id=channel,
                proposal=signed_proposal(channel, tx_id, msp_id, cert, timestamp, transient or {}),
            )
        )
        return future

    def invoke(self, fn: str, args: Sequence[bytes] = (), **kw: object) -> TxResult:
        return self.start(fn, args, **kw).result(timeout=30)  # type: ignore[arg-type]

    def commit(self, result: TxResult, tx_id: str = "") -> None:
        for key, value in result.writes.items():
            mod = kvpb.KeyModification(tx_id=tx_id, value=value or b"", is_delete=value is None)
            self.history.setdefault(key, []).insert(0, mod)
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        for key, entries in result.metadata.items():
            self.metadata.setdefault(key, {}).update(entries)

    # --- answering the chaincode --------------------------------------------------------------
    def _read(self) -> None:
        try:
            for msg in self._call:
                self._handle(msg)
        except grpc.RpcError:
            pass
        with self._lock:
            pending = list(self._txs.values())
        for tx in pending:
            if not tx.future.done():
                tx.future.set_exception(ConnectionError("stream closed"))

    def _handle(self, msg: pb.ChaincodeMessage) -> None:
        if msg.type == CCM.KEEPALIVE:
            self.keepalive_echoes.put(msg)
            return
        with self._lock:
            tx = self._txs.get((msg.channel_id, msg.txid))
        if tx is None:
            self.unsolicited.append(msg)
            return
        if msg.type in (CCM.COMPLETED, CCM.ERROR):
            with self._lock:
                self._txs.pop((msg.channel_id, msg.txid))
            tx.result.message = msg
            tx.future.set_result(tx.result)
            return
        tx.result.requests.append(msg.type)
        try:
            payload = self._answer(msg, tx.result)
        except KeyError as exc:
            self.send(
                CCM(type=CCM.ERROR, payload=str(exc).encode(), txid=msg.txid, channel_id=msg.channel_id)
            )
            return
        self.send(CCM(type=CCM.RESPONSE, payload=payload, txid=msg.txid, channel_id=msg.channel_id))

    def _check(self, key: str) -> str:
        if key in self.fail_keys:
            raise KeyError(f"peer refuses key {key}")
        return key

    def _answer(self, msg: pb.ChaincodeMessage, result: TxResult) -> bytes:
        t, p = msg.type, msg.payload
        if t == CCM.GET_STATE:
            return self.state.get(self._check(pb.GetState.FromString(p).key), b"")
        if t == CCM.GET_STATE_MULTIPLE:
            keys = pb.GetStateMultiple.FromString(p).keys
            values = [self.state.get(self._check(k), b"") for k in keys]
            return pb.GetStateMultipleResult(values=values).SerializeToString()
        if t == CCM.PUT_STATE:
            put = pb.PutState.FromString(p)
            result.writes[self._check(put.key)] = put.value
            return b""
        if t == CCM.DEL_STATE:
            result.writes[self._check(pb.DelState.FromString(p).key)] = None
            return b""
        if t == CCM.WRITE_BATCH_STATE:
            for rec in pb.WriteBatchState.FromString(p).rec:
                self._check(rec.key)
                if rec.type == CCM.PUT_STATE:
                    result.writes[rec.key] = rec.value
                elif rec.type == CCM.DEL_STATE:
                    result.writes[rec.key] = None
                elif rec.type == CCM.PUT_STATE_METADATA:
                    result.metadata.setdefault(rec.key, {})[rec.metadata.metakey] = rec.metadata.value
            return b""
        if t == CCM.PUT_STATE_METADATA:
            put_md = pb.PutStateMetadata.FromString(p)
            result.metadata.setdefault(self._check(put_md.key), {})[put_md.metadata.metakey] = (
                put_md.metadata.value
            )
            return b""
        if t == CCM.GET_STATE_METADATA:
            entries = self.metadata.get(self._check(pb.GetStateMetadata.FromString(p).key), {})
            out = [pb.StateMetadata(metakey=k, value=v) for k, v in sorted(entries.items())]
            return pb.StateMetadataResult(entries=out).SerializeToString()
        if t == CCM.GET_STATE_BY_RANGE:
            rng = pb.GetStateByRange.FromString(p)
            lo, hi = rng.startKey.encode(), rng.endKey.encode()
            keys = sorted(
                (k for k in self.state if k.encode() >= lo and (not hi or k.encode() < hi)), key=str.encode
            )
            items = [
                kvpb.KV(namespace=self.chaincode_name, key=k, value=self.state[k]).SerializeToString()
                for k in keys
            ]
            return self._page(iter(items))
        if t == CCM.GET_HISTORY_FOR_KEY:
            key = self._check(pb.GetHistoryForKey.FromString(p).key)
            return self._page(iter([m.SerializeToString() for m in self.history.get(key, [])]))
        if t == CCM.QUERY_STATE_NEXT:
            iterator_id = pb.QueryStateNext.FromString(p).id
            return self._page(self._iterators[iterator_id], iterator_id)
        if t == CCM.QUERY_STATE_CLOSE:
            iterator_id = pb.QueryStateClose.FromString(p).id
            self._iterators.pop(iterator_id, None)  # like the peer: closing a finished iterator is fine
            self.closed_iterators.append(iterator_id)
            return pb.QueryResponse(id=iterator_id).SerializeToString()
        raise KeyError(f"fake peer does not handle {CCM.Type.Name(t)}")

    def _page(self, items: Iterator[bytes], iterator_id: str | None = None) -> bytes:
        iterator_id = iterator_id or f"it{next(self._ids)}"
        page = list(itertools.islice(items, self.page_size))
        rest = list(items)
        has_more = bool(rest)
        if has_more:
            self._iterators[iterator_id] = iter(rest)
        else:
            self._iterators.pop(iterator_id, None)
        return pb.QueryResponse(
            results=[pb.QueryResultBytes(resultBytes=b) for b in page],
            has_more=has_more,
            id=iterator_id,
        ).SerializeToString()
