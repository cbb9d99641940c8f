"""Proof bundles: everything an auditor needs to re-check one invoice with no access to the network.

The bundle (`"format": "ledgerhub-proof/1"`, JSON) carries *evidence*, not claims: each record it shows
(invoice, contract, assets, usage messages, readings) is also inside the write set of a transaction whose
exact envelope bytes are in the bundle, every envelope's hash is in its block's header, and the headers
chain back to the genesis block that holds the org CA certificates. The verifier (`hub.audit.verify`)
re-derives every link from those bytes; the plain JSON copies exist so a person can read the bundle and
so the verifier can say *which* copy disagrees with the ledger. See ADR 0019 for the layout and the
trade-off of carrying the full header chain.

Built only through the `Ledger` protocol (`evaluate`, `tx`, `block`), so the same code serves the
embedded ledger and Fabric (`hub.audit.proof_fabric`, ADR 0034: whole blocks and the channel's config
block instead of the embedded header chain).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from chaincode import keys
from hub.audit.disclosure import foreign_data
from hub.billing.client import ContractClient
from hub.errors import HubError
from hub.ledger.base import BlockRecord, Ledger, LedgerNotFound, TransactionRecord
from hub.principal import Principal

if TYPE_CHECKING:
    from hub.services import LedgerGateway

FORMAT = "ledgerhub-proof/1"


class ProofError(Exception):
    """The ledger cannot give a proof for this invoice (unknown invoice, unsupported ledger)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _ledger_kind(record: TransactionRecord) -> str:
    fmt = record.raw.get("format")
    if fmt == "embedded/1":
        return "embedded"
    if "envelope" in record.raw:
        return "fabric"
    raise ProofError("proof_unsupported", f"transaction {record.tx_id} carries no raw envelope")


def _tx_entry(record: TransactionRecord) -> dict[str, Any]:
    """A transaction as its exact stored bytes plus where it sits (block, index) and its commit code."""
    return {
        "tx_id": record.tx_id,
        "block": record.block,
        "index": record.index,
        "status": record.status,
        "function": record.function,
        "envelope": _b64(record.raw["envelope"]),
    }


def _block_entry(block: BlockRecord, involved: bool) -> dict[str, Any]:
    """Header bytes (canonical JSON text for the embedded ledger) and, for blocks holding a transaction
    of the proof, the hash of every envelope in the block: enough to recompute `data_hash` without
    shipping the other transactions."""
    raw = block.raw
    if "header" not in raw:
        raise ProofError("proof_unsupported", f"block {block.number} carries no raw header")
    entry: dict[str, Any] = {
        "number": block.number,
        "header": bytes(raw["header"]).decode("utf-8"),
        "hash": bytes(block.hash).hex(),
    }
    if involved:
        # validation codes are block metadata outside the hash: each proof transaction states its own
        entry["tx_hashes"] = [bytes(h).hex() for h in raw["tx_hashes"]]
    return entry


def _last_written(
    records: list[TransactionRecord], key: str, until: str | None = None
) -> dict[str, Any] | None:
    """The value of `key` written by the last of `records` (in ledger order) that wrote it, from the
    embedded read-write set; with `until`, the value that transaction wrote (the contract as accepted)."""
    found = None
    for rec in records:
        value = _writes(rec).get(key)
        if value is not None:
            found = json.loads(value)
        if until is not None and rec.tx_id == until:
            break
    return found


def _writes(record: TransactionRecord) -> dict[str, bytes | None]:
    if "rwset" not in record.raw and "envelope" in record.raw:  # Fabric: the write set inside the envelope
        from hub.audit.fabric_tx import UNREADABLE
        from hub.audit.proof_fabric import writes_of

        try:
            return writes_of(record)
        except UNREADABLE as exc:
            raise ProofError(
                "proof_unsupported", f"transaction {record.tx_id} is not a readable Fabric transaction: {exc}"
            ) from exc
    writes = record.raw.get("rwset", {}).get("writes", [])
    return {k: None if v is None else base64.b64decode(v) for k, v in writes}


def _refuse_foreign(records: list[TransactionRecord], contract_id: str, devices: list[str]) -> None:
    """A bundle carries its transactions whole: refuse rather than hand out another contract's data
    (a ledger written before ADR 0028 may hold RecordUsage transactions of several contracts)."""
    for rec in records:
        found = foreign_data(contract_id, set(devices), rec.function, rec.args, _writes(rec))
        if found:
            raise ProofError(
                "proof_discloses_other_contracts",
                f"transaction {rec.tx_id} behind this invoice {found[0]}; its envelope cannot be shipped "
                "without disclosing that to this invoice's readers (ADR 0028)",
            )


def _header_entry(ledger: Ledger, n: int) -> dict[str, Any]:
    """Blocks the proof only links through need their header alone (`Ledger.block_header`: on the
    embedded ledger the stored header row, not a hash of every envelope of the block), which keeps a proof
    over a long chain proportional to the headers, not to the whole ledger."""
    try:
        header = ledger.block_header(n)
    except LedgerNotFound as exc:
        raise ProofError("proof_unavailable", f"block {n} is missing from the ledger") from exc
    return {"number": n, "header": bytes(header.raw).decode("utf-8"), "hash": bytes(header.hash).hex()}


def _genesis_entry(block: BlockRecord) -> dict[str, Any]:
    raw = block.raw
    return {
        "header": bytes(raw["header"]).decode("utf-8"),
        "hash": bytes(block.hash).hex(),
        "config": bytes(raw["config"]).decode("utf-8"),
    }


def build_bundle(
    ledger: Ledger, invoice_id: str, *, as_org: str, disclose_block_neighbours: bool = False
) -> dict[str, Any]:
    """The proof bundle of `invoice_id`, read from `ledger` acting as `as_org` (queries only).

    `disclose_block_neighbours`: a Fabric block ships whole (its data hash covers every envelope), so a
    proof transaction that shares its block with another contract's transaction is refused
    (`proof_discloses_other_contracts`) unless the reader may see every contract anyway: an auditor
    (ADR 0034)."""
    # the records ship as the ledger answered them (`.raw`): the verifier compares them with the write sets
    client = ContractClient.of(ledger)
    found = client.get_invoice(invoice_id, as_org=as_org)
    if found.type != "invoice":
        raise ProofError("not_an_invoice", f"{invoice_id} is a credit note; prove its invoice instead")
    if found.kind == "interim":  # progressive billing (ADR 0051): proved by its period's final
        raise ProofError("proof_unsupported", f"{invoice_id} is an interim invoice; prove the period's final "
                         "invoice, which names it")
    invoice = dict(found.raw)
    contract_id, period = found.contract_id, found.period
    agreed = client.get_contract(contract_id, as_org=as_org)
    contract = dict(agreed.raw)
    assets = [dict(client.get_asset(a, as_org=as_org).raw) for a in agreed.assets]
    # late readings (ADR 0048): those of this period billed later are not in this invoice; those billed
    # in this period from earlier ones are
    readings = [r for r in client.get_readings(contract_id, period, as_org=as_org).readings
                if "billed_in" not in r]
    if found.late_readings:
        readings += client.get_late_readings(contract_id, period, as_org=as_org).readings
    contributed: dict[tuple[str, str], list[str]] = {}
    for r in readings:
        contributed.setdefault((r["device_id"], r["message_id"]), []).append(r["id"])
    messages = []
    for (device_id, message_id), ids in sorted(contributed.items()):
        message = dict(client.get_usage_message(device_id, message_id, as_org=as_org).raw)
        messages.append({"message": message, "readings": ids})

    # every transaction the proof rests on; order of discovery does not matter (sorted by position below)
    wanted: dict[str, None] = {}
    for tx_id in (
        contract.get("proposed_tx"),
        contract.get("accepted_tx"),
        *(a.get("registered_tx") for a in assets),
        *(r["tx_id"] for r in readings),
        *invoice_tx_ids(invoice),
    ):
        if tx_id:
            wanted[tx_id] = None

    records = [ledger.tx(tx_id) for tx_id in wanted]
    records.sort(key=lambda rec: (rec.block, rec.index))
    kinds = {_ledger_kind(rec) for rec in records}
    if len(kinds) != 1:
        raise ProofError("proof_unsupported", f"transactions of several ledger kinds {sorted(kinds)}")
    # the contract as agreed and the assets as the proof's transactions left them (the live records may
    # have moved on since: a later close, an asset bound to a later contract), so every field is checkable
    contract = (
        _last_written(records, keys.contract(contract_id), until=contract.get("accepted_tx")) or contract
    )
    assets = [_last_written(records, keys.asset(a["id"])) or a for a in assets]
    _refuse_foreign(records, contract_id, contract.get("assets") or [])
    records_part = {
        "invoice": invoice,
        "contract": contract,
        "assets": assets,
        "messages": messages,
        "readings": readings,
    }
    if kinds == {"fabric"}:
        return _fabric_bundle(ledger, records, records_part, contract_id, contract.get("assets") or [],
                              disclose_block_neighbours)
    transactions = [_tx_entry(rec) for rec in records]
    involved = {rec.block for rec in records}
    last = max(involved)
    blocks = [
        _block_entry(ledger.block(n), True) if n in involved else _header_entry(ledger, n)
        for n in range(1, last + 1)
    ]
    return {
        "format": FORMAT,
        "ledger": {
            "kind": "embedded",
            "network_id": ledger.network_id,
            "genesis": _genesis_entry(ledger.block(0)),
        },
        "invoice": invoice,
        "contract": contract,
        "assets": assets,
        "messages": messages,
        "readings": readings,
        "transactions": transactions,
        "blocks": blocks,
    }


def _fabric_bundle(
    ledger: Ledger,
    records: list[TransactionRecord],
    records_part: dict[str, Any],
    contract_id: str,
    devices: list[str],
    disclose_block_neighbours: bool = False,
) -> dict[str, Any]:
    """ADR 0034: the config block as anchor, whole blocks, the chaincode definition."""
    from hub.audit.proof_fabric import FabricProofError, fabric_parts

    try:
        section, transactions, blocks = fabric_parts(
            ledger.block, records, contract_id, devices, disclose_block_neighbours=disclose_block_neighbours
        )
    except FabricProofError as exc:
        raise ProofError(exc.code, exc.message) from exc
    section["network_id"] = ledger.network_id
    return {"format": FORMAT, "ledger": section, **records_part, "transactions": transactions,
            "blocks": blocks}


def invoice_tx_ids(invoice: Mapping[str, Any]) -> list[str]:
    """Transactions that wrote the invoice: the close, then status changes, ERP refs, payments, dispute."""
    ids = [invoice.get("tx_id")]
    ids += [h.get("tx_id") for h in invoice.get("history", [])]
    ids += [r.get("tx_id") for r in invoice.get("erp_refs", [])]
    ids += [p.get("tx_id") for p in invoice.get("payments", [])]
    ids.append((invoice.get("dispute") or {}).get("tx_id"))
    return [i for i in ids if isinstance(i, str) and i]


class ProofServices(Protocol):
    """What the proof hook reads of the app's services (hub.api.deps.Services has both)."""

    ledger: Ledger
    gateway: LedgerGateway | None  # maps a caller's org to the org the ledger acts as


def _ledger_org(services: ProofServices, org: str) -> str:
    return services.gateway.ledger_org(org) if services.gateway is not None else org


def build_proof_bundle(services: ProofServices, invoice_id: str, principal: Principal) -> dict[str, Any]:
    """The hook `GET /v1/invoices/{id}/proof` calls (after its visibility check)."""
    try:
        # an auditor reads every contract (services.may_see), so the other envelopes of a whole Fabric
        # block tell it nothing it may not know; a party gets 409 rather than another party's readings
        return build_bundle(services.ledger, invoice_id, as_org=_ledger_org(services, principal.org),
                            disclose_block_neighbours=principal.role == "auditor")
    except ProofError as exc:
        status = {"not_an_invoice": 422, "proof_discloses_other_contracts": 409}.get(exc.code, 501)
        raise HubError(exc.code, "Proof not available", exc.message, status=status) from exc


def involved_orgs(
    transactions: Iterable[Mapping[str, Any]], blocks: Iterable[Mapping[str, Any]] | None = None
) -> list[str]:
    """Endorsing orgs of a bundle's transactions (for summaries), read from the envelopes: embedded entries
    carry theirs; Fabric entries point into `blocks` (the bundle's, ADR 0034). Unreadable ones are skipped
    (the verifier reports them)."""
    from hub.ledger.embedded.transaction import Envelope

    by_number = {b.get("number"): b for b in blocks or () if isinstance(b, Mapping)}
    orgs: set[str] = set()
    for tx in transactions:
        if "envelope" not in tx and tx.get("block") in by_number:
            orgs.update(_fabric_endorsers(by_number[tx["block"]], tx.get("index")))
            continue
        try:
            env = Envelope.decode(base64.b64decode(tx["envelope"]))
        except (ValueError, KeyError):
            continue
        orgs.update(e.msp_id for e in env.endorsements)
    return sorted(orgs)


def _fabric_endorsers(block: Mapping[str, Any], index: Any) -> list[str]:
    from fabric_protos.msp import identities_pb2

    from hub.audit.fabric_tx import UNREADABLE, parse_endorser_tx

    try:
        tx = parse_endorser_tx(base64.b64decode(block["data"][index]))
        return [identities_pb2.SerializedIdentity.FromString(e).mspid for e, _sig in tx.endorsements]
    except (*UNREADABLE, KeyError, IndexError, TypeError):
        return []
