"""Chaincode-as-a-service shim built directly on hyperledger-fabric-protos (ADR 0011).

`ChaincodeServer(invoke, ServerConfig.from_env()).start()` serves `invoke(stub, fn, args)` to peers over
`protos.Chaincode/Connect`; `PeerStub` is the contract's `Stub` for one transaction on a peer.
"""

from chaincode.shim.handler import StreamHandler
from chaincode.shim.policy import VALIDATION_PARAMETER, key_policy_bytes, orgs_from_policy
from chaincode.shim.server import SERVER_OPTIONS, ChaincodeServer, ServerConfig
from chaincode.shim.stub import Capabilities, PeerError, PeerStub, ProposalContext

__all__ = [
    "SERVER_OPTIONS",
    "VALIDATION_PARAMETER",
    "Capabilities",
    "ChaincodeServer",
    "PeerError",
    "PeerStub",
    "ProposalContext",
    "ServerConfig",
    "StreamHandler",
    "key_policy_bytes",
    "orgs_from_policy",
]
