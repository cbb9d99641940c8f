"""The ledger's key layout (composite keys, see docs/chaincode.md and ARCHITECTURE.md).

Audit tools and the hub's proof builder read these keys directly, so every key the contract touches is
built here and nowhere else. Composite keys use Fabric's encoding (`chaincode.stub.create_composite_key`),
so both ledgers hold the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaincode.stub import MAX_UNICODE_RUNE, create_composite_key

ASSET = "asset"
CONTRACT = "contract"
READING = "reading"
USAGE_BATCH = "usagebatch"
USAGE_MESSAGE = "usagemsg"
INVOICE = "invoice"
PERIOD = "period"
AMENDMENT = "amendment"


def asset(asset_id: str) -> str:
    return create_composite_key(ASSET, [asset_id])


def contract(contract_id: str) -> str:
    return create_composite_key(CONTRACT, [contract_id])


# Layout of reading keys, recorded in each contract at proposal (`"reading_key_version"`, ADR 0026):
# 2 = reading~{contract}~{period}~{device}~{reading_id} (a reading id is unique per device);
# contracts without the field were recorded before it existed and keep layout 1,
# reading~{contract}~{period}~{reading_id} (a reading id is unique per contract).
READING_KEY_VERSION = 2
READING_KEY_VERSION_FIELD = "reading_key_version"


def reading(contract_id: str, period: str, device_id: str, reading_id: str) -> str:
    """The key of a reading of a contract with `reading_key_version` 2 (every contract proposed now)."""
    return create_composite_key(READING, [contract_id, period, device_id, reading_id])


def reading_v1(contract_id: str, period: str, reading_id: str) -> str:
    """The key of a reading of a contract recorded without `reading_key_version` (layout 1)."""
    return create_composite_key(READING, [contract_id, period, reading_id])


def reading_key_version(contract_record: Mapping[str, Any]) -> int:
    """The reading key layout of a contract record: 1 when the record predates the field."""
    version = contract_record.get(READING_KEY_VERSION_FIELD, 1)
    if type(version) is not int or version not in (1, READING_KEY_VERSION):
        raise ValueError(f"unknown reading_key_version {version!r}")
    return version


def reading_in_layout(version: int, contract_id: str, period: str, device_id: str, reading_id: str) -> str:
    """The key of reading (`device_id`, `reading_id`) under layout `version` (`reading_key_version`)."""
    if version == 1:
        return reading_v1(contract_id, period, reading_id)
    return reading(contract_id, period, device_id, reading_id)


def readings_prefix(contract_id: str, period: str) -> str:
    """A prefix of every reading key of (contract, period), in either layout."""
    return create_composite_key(READING, [contract_id, period])


def usage_batch(contract_id: str, period: str, tx_id: str) -> str:
    return create_composite_key(USAGE_BATCH, [contract_id, period, tx_id])


def usage_message(device_id: str, message_id: str) -> str:
    return create_composite_key(USAGE_MESSAGE, [device_id, message_id])


def invoice(invoice_id: str) -> str:
    return create_composite_key(INVOICE, [invoice_id])


def period(contract_id: str, period_: str) -> str:
    return create_composite_key(PERIOD, [contract_id, period_])


def amendment(contract_id: str, amendment_id: str) -> str:
    """A contract amendment (ADR 0046): amendment~{contract}~{amendment id}."""
    return create_composite_key(AMENDMENT, [contract_id, amendment_id])


def invoice_id(contract_id: str, period_: str) -> str:
    """Deterministic invoice id (API.md): the same close always names the same invoice."""
    return f"inv-{contract_id}-{period_}"


def credit_note_id(invoice_id_: str, n: int) -> str:
    return f"cn-{invoice_id_}-{n}"


def invoice_ranges(contract_id: str) -> list[tuple[str, str]]:
    """Key ranges [start, end) holding every invoice and credit note of `contract_id`, in key order
    (`cn-inv-{contract}-...` sorts before `inv-{contract}-...`). A range may also hold documents of a
    contract whose id extends this one (`{contract}-x`): callers filter on the record's contract_id."""
    out = []
    for id_prefix in (
        credit_note_id(invoice_id(contract_id, ""), 0)[: -len("-0")],
        invoice_id(contract_id, ""),
    ):
        start = invoice(id_prefix)[:-1]  # without the closing separator: a prefix of every such key
        out.append((start, start + MAX_UNICODE_RUNE))
    return out
