"""`GET /v1/audit/verify`: the whole-ledger verification report, for auditors and operators.

It is the ledger's own `Ledger.verify()` (embedded: hash chain, data hashes, every transaction replayed
through the committer's own validator, state rebuilt and compared), so the API can never disagree with the
ledger about what "valid" means. Only the embedded ledger can be checked this way: a Fabric network is
verified by its own peers (`LedgerUnsupported`), and the endpoint says so (501) instead of reporting an
empty success.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError, problem_responses

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 501, 503))


@router.get("/verify", summary="Verify the ledger: hash chain, signatures, endorsement policies, state")
def verify(
    principal: Principal = Depends(require_roles("auditor", "operator")),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    from hub.ledger.base import LedgerUnsupported

    ledger = services.ledger
    try:
        report = ledger.verify()
    except LedgerUnsupported as exc:
        raise ApiError(501, "verify_unsupported", "Ledger verification not available", str(exc)) from exc
    return {
        "ok": report.ok,
        "network_id": report.network_id,
        # the anchor auditors pin proof bundles to (`ledgerhub audit verify --genesis`)
        "genesis_hash": bytes(ledger.block(0).hash).hex(),
        "checked": {
            "blocks": report.blocks,
            "transactions": report.transactions,
            "valid_transactions": report.valid_transactions,
            "state_keys": report.state_keys,
        },
        "problems": [
            {"check": p.check, "block": p.block, "tx_id": p.tx_id, "detail": p.detail, "message": str(p)}
            for p in report.problems
        ],
        "failed_blocks": report.failed_blocks(),
        "failed_txs": report.failed_txs(),
        "summary": report.summary(),
    }
