"""Reading the gateway's rich errors: `google.rpc.Status` with `gateway.ErrorDetail` per endpoint.

The gateway puts one ErrorDetail (address, MSP id, message) per peer or orderer it tried into the status
details (trailer `grpc-status-details-bin`). The chaincode's own refusal is inside those messages as
"chaincode response <status>, <message>". We define `google.rpc.Status` in a private descriptor pool rather
than depend on googleapis-common-protos for three fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from fabric_protos.gateway import gateway_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from chaincode.errors import ChaincodeError
from hub.ledger.base import LedgerUnavailable


def _status_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="ledgerhub/google_rpc_status.proto",
        package="google.rpc",
        dependency=["google/protobuf/any.proto"],
        syntax="proto3",
    )
    msg = fdp.message_type.add(name="Status")
    f = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="code", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    msg.field.add(name="message", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    msg.field.add(
        name="details",
        number=3,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


RpcStatus = _status_class()
STATUS_TRAILER = "grpc-status-details-bin"
_DETAIL_NAME = gateway_pb2.ErrorDetail.DESCRIPTOR.full_name
_CHAINCODE_RESPONSE = re.compile(r"chaincode response (\d+), (.*)", re.DOTALL)


@dataclass(frozen=True)
class GatewayError:
    code: grpc.StatusCode
    message: str
    details: list[gateway_pb2.ErrorDetail]

    def texts(self) -> list[str]:
        return [self.message, *(d.message for d in self.details)]

    def chaincode_error(self) -> ChaincodeError | None:
        """The contract's refusal, if any endpoint reported one."""
        for text in self.texts():
            match = _CHAINCODE_RESPONSE.search(text)
            if match:
                error = ChaincodeError.from_json(match.group(2).strip())
                if error is not None:
                    return error
        return None

    def mentions(self, fragment: str) -> bool:
        return any(fragment in t for t in self.texts())

    def __str__(self) -> str:
        parts = [f"{self.code.name}: {self.message}"]
        parts += [f"[{d.msp_id} {d.address}] {d.message}" for d in self.details]
        return "; ".join(parts)


def gateway_error(err: grpc.RpcError) -> GatewayError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    details: list[gateway_pb2.ErrorDetail] = []
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == STATUS_TRAILER and isinstance(value, bytes):
            status = RpcStatus.FromString(value)
            for any_msg in status.details:
                if any_msg.type_url.endswith("/" + _DETAIL_NAME):
                    details.append(gateway_pb2.ErrorDetail.FromString(any_msg.value))
    return GatewayError(code, message or "", details)


def status_trailer(code: int, message: str, details: list[gateway_pb2.ErrorDetail]) -> bytes:
    """Encode a rich status the way the gateway does (used by tests and fakes)."""
    status = RpcStatus(code=code, message=message)
    for detail in details:
        status.details.add(type_url=f"type.googleapis.com/{_DETAIL_NAME}", value=detail.SerializeToString())
    return status.SerializeToString()


class OrdererUnavailable(LedgerUnavailable):
    """Submit reached the gateway but no orderer took the transaction (unreachable, or it answered
    SERVICE_UNAVAILABLE, e.g. no Raft leader yet): nothing was ordered, so nothing can commit."""


# What the gateway's Submit reports per orderer when the transaction never got into the orderer
# (fabric internal/pkg/gateway/submit.go: the Broadcast stream could not be opened, or the orderer answered
# SERVICE_UNAVAILABLE); an orderer lost after it took the transaction (EOF, reset) is not among them.
ORDERER_REFUSED_MARKERS = (
    "connection refused",
    "error while dialing",
    "status=service_unavailable",
    "no orderer nodes available",
)


def orderer_refused(ge: GatewayError) -> bool:
    """True when Submit failed UNAVAILABLE and every orderer the gateway tried never took the transaction."""
    if ge.code != grpc.StatusCode.UNAVAILABLE:
        return False
    if not ge.details:
        return "no orderer nodes available" in ge.message
    return all(any(m in d.message.lower() for m in ORDERER_REFUSED_MARKERS) for d in ge.details)
