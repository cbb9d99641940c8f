"""Proposals, proposal responses and envelopes: the signed byte strings of an embedded transaction.

Same shape as Fabric's: the creator signs SHA-256 of the proposal bytes; every endorsing peer signs
SHA-256 of the same proposal-response bytes (proposal hash, read-write set, chaincode response, event);
the envelope keeps those exact bytes plus the signatures, so anyone holding the org root certificates can
re-verify a transaction offline. Transient data is handed to the chaincode but never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from .codec import DecodeError, b64d, b64e, canonical, frame, loads, sha256, unframe
from .identity import serialize_creator
from .rwset import RWSet

NONCE_BYTES = 24


def make_tx_id(nonce: bytes, creator: bytes) -> str:
    return hashlib.sha256(nonce + creator).hexdigest()


def format_timestamp(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Proposal:
    channel: str
    tx_id: str
    timestamp: str  # RFC 3339 UTC with microseconds
    fn: str
    args: tuple[bytes, ...]
    creator_msp_id: str
    creator_cert: bytes  # PEM
    nonce: bytes

    @classmethod
    def new(
        cls,
        channel: str,
        fn: str,
        args: list[bytes],
        msp_id: str,
        cert: bytes,
        now: dt.datetime | None = None,
    ) -> Proposal:
        nonce = os.urandom(NONCE_BYTES)
        tx_id = make_tx_id(nonce, serialize_creator(msp_id, cert))
        stamp = format_timestamp(now or dt.datetime.now(dt.UTC))
        return cls(channel, tx_id, stamp, fn, tuple(args), msp_id, cert, nonce)

    @property
    def creator(self) -> bytes:
        return serialize_creator(self.creator_msp_id, self.creator_cert)

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))

    def encode(self) -> bytes:
        return canonical(
            {
                "channel": self.channel,
                "tx_id": self.tx_id,
                "timestamp": self.timestamp,
                "fn": self.fn,
                "args": [b64e(a) for a in self.args],
                "creator": {"msp_id": self.creator_msp_id, "cert": self.creator_cert.decode("ascii")},
                "nonce": self.nonce.hex(),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        obj = loads(data)
        try:
            return cls(
                channel=str(obj["channel"]),
                tx_id=str(obj["tx_id"]),
                timestamp=str(obj["timestamp"]),
                fn=str(obj["fn"]),
                args=tuple(b64d(a) for a in obj["args"]),
                creator_msp_id=str(obj["creator"]["msp_id"]),
                creator_cert=str(obj["creator"]["cert"]).encode("ascii"),
                nonce=bytes.fromhex(obj["nonce"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad proposal: {exc}") from exc


@dataclass(frozen=True)
class Response:
    """What a peer endorses. `status` is 200 for success (failed simulations are never endorsed)."""

    proposal_hash: bytes
    status: int
    payload: bytes
    event: tuple[str, bytes] | None
    rwset: RWSet

    def encode(self) -> bytes:
        return canonical(
            {
                "proposal_hash": self.proposal_hash.hex(),
                "status": self.status,
                "payload": b64e(self.payload),
                "event": None
                if self.event is None
                else {"name": self.event[0], "payload": b64e(self.event[1])},
                "rwset": self.rwset.to_json(),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Response:
        obj = loads(data)
        try:
            ev = obj["event"]
            return cls(
                proposal_hash=bytes.fromhex(obj["proposal_hash"]),
                status=int(obj["status"]),
                payload=b64d(obj["payload"]),
                event=None if ev is None else (str(ev["name"]), b64d(ev["payload"])),
                rwset=RWSet.from_json(obj["rwset"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad proposal response: {exc}") from exc


@dataclass(frozen=True)
class EndorsementSig:
    msp_id: str
    cert: bytes  # PEM
    signature: bytes  # DER over SHA-256(response bytes)

    def to_json(self) -> dict[str, Any]:
        return {"msp_id": self.msp_id, "cert": self.cert.decode("ascii"), "signature": b64e(self.signature)}


@dataclass(frozen=True)
class Envelope:
    """A transaction as ordered: exact signed bytes and their signatures."""

    proposal_bytes: bytes
    creator_signature: bytes
    response_bytes: bytes
    endorsements: tuple[EndorsementSig, ...]

    def encode(self) -> bytes:
        ends = canonical([e.to_json() for e in self.endorsements])
        return frame([self.proposal_bytes, self.creator_signature, self.response_bytes, ends])

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        parts = unframe(data)
        if len(parts) != 4:
            raise DecodeError("envelope must have 4 parts")
        try:
            ends = tuple(
                EndorsementSig(str(e["msp_id"]), str(e["cert"]).encode("ascii"), b64d(e["signature"]))
                for e in loads(parts[3])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad endorsements: {exc}") from exc
        return cls(parts[0], parts[1], parts[2], ends)


@dataclass(frozen=True)
class ParsedTx:
    envelope: Envelope
    proposal: Proposal
    response: Response

    @classmethod
    def parse(cls, data: bytes) -> ParsedTx:
        env = Envelope.decode(data)
        return cls(env, Proposal.decode(env.proposal_bytes), Response.decode(env.response_bytes))

    @property
    def proposal_hash_ok(self) -> bool:
        return sha256(self.envelope.proposal_bytes) == self.response.proposal_hash
