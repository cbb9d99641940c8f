"""`PeerStub`: the contract's `Stub` for one transaction, answered by a real (or fake) Fabric peer.

Every state call is one request/response exchange on the Connect stream, tagged with the transaction's
(channel, txid); the stream handler routes the peer's answer back here. Calls of one transaction are
sequential (the contract runs single-threaded inside a transaction), which is what the peer expects.

Two peer capabilities announced in READY change how we talk:
* write batching: puts, deletes and metadata writes are buffered and sent as WRITE_BATCH_STATE chunks just
  before COMPLETED (fewer round trips); later writes of the same key replace earlier ones, as the peer's
  own write set would;
* get-multiple: `get_multiple_states` becomes GET_STATE_MULTIPLE in chunks instead of one GET_STATE per key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fabric_protos.common import common_pb2
from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_event_pb2, proposal_pb2
from fabric_protos.peer import chaincode_shim_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from chaincode.shim.policy import VALIDATION_PARAMETER, key_policy_bytes, orgs_from_policy
from chaincode.stub import KeyModification, partial_key_range

CCM = pb.ChaincodeMessage
T = TypeVar("T")
# Go shim substitutes this for an empty start key (the peer treats "" as "no start" differently per DB).
EMPTY_KEY_SUBSTITUTE = "\x01"

# (message type, payload) -> response payload; raises PeerError when the peer answers ERROR.
PeerCall = Callable[[int, bytes], bytes]


def _to_datetime(ts: Timestamp) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts.seconds, dt.UTC) + dt.timedelta(microseconds=ts.nanos // 1000)


class PeerError(Exception):
    """The peer answered a state request with ERROR (message = its text). Fails the transaction."""


@dataclass(frozen=True)
class Capabilities:
    """What the peer offered in READY (ChaincodeAdditionalParams)."""

    use_write_batch: bool = False
    max_size_write_batch: int = 100
    use_get_multiple_keys: bool = False
    max_size_get_multiple_keys: int = 100


@dataclass(frozen=True)
class ProposalContext:
    """What the contract may learn from the signed proposal."""

    timestamp: dt.datetime
    creator_msp_id: str
    creator_cert: bytes
    transient: Mapping[str, bytes]

    @classmethod
    def from_signed_proposal(cls, signed: proposal_pb2.SignedProposal) -> ProposalContext:
        proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
        signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
        creator = identities_pb2.SerializedIdentity.FromString(signature_header.creator)
        payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
        ts = channel_header.timestamp
        return cls(_to_datetime(ts), creator.mspid, creator.id_bytes, dict(payload.TransientMap))


class PeerStub:
    """`chaincode.stub.Stub` for one transaction, over the peer connection."""

    def __init__(
        self,
        call: PeerCall,
        *,
        channel_id: str,
        tx_id: str,
        context: ProposalContext | None,
        capabilities: Capabilities = Capabilities(),
    ) -> None:
        self._peer_call = call
        self._done = False
        self._iterators: list[Generator[object, None, None]] = []
        self._channel = channel_id
        self._tx_id = tx_id
        self._ctx = context
        self._caps = capabilities
        self._batch: dict[tuple[str, int], pb.WriteRecord] = {}
        self.event: chaincode_event_pb2.ChaincodeEvent | None = None

    # --- transaction context -------------------------------------------------------------
    @property
    def tx_id(self) -> str:
        return self._tx_id

    @property
    def channel_id(self) -> str:
        return self._channel

    def _context(self) -> ProposalContext:
        if self._ctx is None:
            raise RuntimeError("transaction carries no signed proposal")
        return self._ctx

    def tx_timestamp(self) -> dt.datetime:
        return self._context().timestamp

    def creator_msp_id(self) -> str:
        return self._context().creator_msp_id

    def creator_cert(self) -> bytes:
        return self._context().creator_cert

    def transient(self) -> Mapping[str, bytes]:
        return dict(self._context().transient)

    # --- state ------------------------------------------------------------------------------
    def get_state(self, key: str) -> bytes | None:
        payload = self._call(CCM.GET_STATE, pb.GetState(key=key).SerializeToString())
        return payload or None  # Fabric cannot tell an empty value from a missing key

    def get_multiple_states(self, keys: Sequence[str]) -> list[bytes | None]:
        keys = list(keys)
        if not self._caps.use_get_multiple_keys:
            return [self.get_state(k) for k in keys]
        out: list[bytes | None] = []
        size = max(1, self._caps.max_size_get_multiple_keys)
        for i in range(0, len(keys), size):
            chunk = keys[i : i + size]
            raw = self._call(CCM.GET_STATE_MULTIPLE, pb.GetStateMultiple(keys=chunk).SerializeToString())
            values = pb.GetStateMultipleResult.FromString(raw).values
            if len(values) != len(chunk):
                raise PeerError(f"GET_STATE_MULTIPLE answered {len(values)} values for {len(chunk)} keys")
            out.extend(v or None for v in values)
        return out

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ValueError("empty key")
        if not isinstance(value, bytes | bytearray):
            raise TypeError("state values are bytes")
        if self._caps.use_write_batch:
            self._buffer(pb.WriteRecord(key=key, value=bytes(value), type=CCM.PUT_STATE))
            return
        self._call(CCM.PUT_STATE, pb.PutState(key=key, value=bytes(value)).SerializeToString())

    def del_state(self, key: str) -> None:
        if self._caps.use_write_batch:
            self._buffer(pb.WriteRecord(key=key, type=CCM.DEL_STATE))
            return
        self._call(CCM.DEL_STATE, pb.DelState(key=key).SerializeToString())

    def _buffer(self, record: pb.WriteRecord) -> None:
        # a put and a delete of the same key are the same slot (last one wins); metadata is its own slot
        slot = 1 if record.type == CCM.PUT_STATE_METADATA else 0
        self._batch.pop((record.key, slot), None)  # re-insert so the batch keeps the order of last writes
        self._batch[(record.key, slot)] = record

    def _call(self, kind: int, payload: bytes) -> bytes:
        if self._done:
            # e.g. an iterator closed by the garbage collector after the transaction: the peer has
            # forgotten the txid and nobody would ever answer
            raise PeerError("transaction already finished")
        return self._peer_call(kind, payload)

    def finish_iterators(self) -> None:
        """Close the iterators the contract left open, while the peer still knows the transaction."""
        for iterator in self._iterators:
            with contextlib.suppress(PeerError):
                iterator.close()
        self._iterators.clear()

    def finish(self) -> None:
        """End of the transaction (success or not): from now on every peer call is refused."""
        self.finish_iterators()
        self._done = True

    def _track(self, iterator: Generator[T, None, None]) -> Generator[T, None, None]:
        self._iterators.append(iterator)  # type: ignore[arg-type]
        return iterator

    def flush(self) -> None:
        """Send buffered writes (write-batch mode). Called by the handler before COMPLETED."""
        records = list(self._batch.values())
        self._batch.clear()
        size = max(1, self._caps.max_size_write_batch)
        for i in range(0, len(records), size):
            batch = pb.WriteBatchState(rec=records[i : i + size])
            self._call(CCM.WRITE_BATCH_STATE, batch.SerializeToString())

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        return self._track(self._range(start, end))

    def _range(self, start: str, end: str) -> Generator[tuple[str, bytes], None, None]:
        request = pb.GetStateByRange(startKey=start or EMPTY_KEY_SUBSTITUTE, endKey=end)
        response = self._query(CCM.GET_STATE_BY_RANGE, request.SerializeToString())
        for raw in self._paged(response):
            kv = kv_query_result_pb2.KV.FromString(raw)
            yield kv.key, kv.value

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: Sequence[str]
    ) -> Iterator[tuple[str, bytes]]:
        start, end = partial_key_range(object_type, attributes)
        return self.get_state_by_range(start, end)

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        return self._track(self._history(key))

    def _history(self, key: str) -> Generator[KeyModification, None, None]:
        response = self._query(CCM.GET_HISTORY_FOR_KEY, pb.GetHistoryForKey(key=key).SerializeToString())
        for raw in self._paged(response):
            mod = kv_query_result_pb2.KeyModification.FromString(raw)
            yield KeyModification(mod.tx_id, mod.value, _to_datetime(mod.timestamp), mod.is_delete)

    def _query(self, msg_type: int, payload: bytes) -> pb.QueryResponse:
        return pb.QueryResponse.FromString(self._call(msg_type, payload))

    def _paged(self, response: pb.QueryResponse) -> Iterator[bytes]:
        """Walk a peer-side iterator: the first page came with the query, then QUERY_STATE_NEXT until
        has_more is false. Like fabric-chaincode-go, always end with QUERY_STATE_CLOSE (also when the
        contract stops early), so the peer frees the iterator now rather than at transaction end."""
        try:
            while True:
                for item in response.results:
                    yield item.resultBytes
                if not response.has_more:
                    return
                response = self._query(
                    CCM.QUERY_STATE_NEXT, pb.QueryStateNext(id=response.id).SerializeToString()
                )
        finally:
            if response.id:
                self._call(CCM.QUERY_STATE_CLOSE, pb.QueryStateClose(id=response.id).SerializeToString())

    # --- events and endorsement --------------------------------------------------------------
    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name must not be empty")
        self.event = chaincode_event_pb2.ChaincodeEvent(event_name=name, payload=bytes(payload))

    def set_key_endorsement(self, key: str, orgs: Sequence[str]) -> None:
        metadata = pb.StateMetadata(metakey=VALIDATION_PARAMETER, value=key_policy_bytes(orgs))
        if self._caps.use_write_batch:
            self._buffer(pb.WriteRecord(key=key, metadata=metadata, type=CCM.PUT_STATE_METADATA))
            return
        request = pb.PutStateMetadata(key=key, metadata=metadata)
        self._call(CCM.PUT_STATE_METADATA, request.SerializeToString())

    def get_key_endorsement(self, key: str) -> list[str] | None:
        raw = self._call(CCM.GET_STATE_METADATA, pb.GetStateMetadata(key=key).SerializeToString())
        for entry in pb.StateMetadataResult.FromString(raw).entries:
            if entry.metakey == VALIDATION_PARAMETER and entry.value:
                return orgs_from_policy(entry.value)
        return None
