"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers have no tokens)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.api.deps import MetricsDep, ServicesDep
from hub.store.session import is_migrated

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: ledger reachable and database migrated",
            responses={503: {"description": "Not ready; `checks` says what failed"}})
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        checks["ledger"] = {"ok": True, "height": services.ledger.height()}
    except Exception as exc:  # any failure means "not ready", with the reason
        checks["ledger"] = {"ok": False, "error": type(exc).__name__}
    try:
        checks["database"] = {"ok": is_migrated(services.engine)}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(registry: MetricsDep) -> Response:
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
