"""`/v1/keys`: key versions and rotation, for operators only, each of its own org's keys (ADR 0029).

The key manager (`hub.keys.manager.KeyManager`) sits on `Services.keys`. Listing shows names, versions,
key ids (Fabric SKIs), certificate subjects and expiry; it never shows anything secret (there is nothing
secret to show: private keys live in the HSM). Rotation, disabling and enabling are logged with the
operator's token fingerprint.

A key belongs to the org the registry records for it (`ca-`, `endorser-`, `client-`, `documents-<org>`):
an operator lists and acts on its own org's keys only; another org's key is `404 unknown_key`, exactly like
a key that does not exist (disabling `endorser-CustomerMSP` would stop the ledger for every party). Only an
operator token configured with `"scope": "platform"` reaches every org's keys.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends

from hub.api.deps import Principal, Services, get_services, require_roles
from hub.api.problems import ApiError
from hub.keys.manager import KeyManager, KeyManagerError

log = logging.getLogger("ledgerhub.keys")

router = APIRouter(prefix="/v1/keys", tags=["keys"])
operator_only = require_roles("operator")


def _manager(services: Services) -> KeyManager:
    if services.keys is None:
        raise ApiError(503, "keys_unavailable", "Key management is not configured on this hub")
    return services.keys


def _owned(manager: KeyManager, name: str, principal: Principal) -> KeyManager:
    """The manager, once `name` is known to belong to the caller's org (else the unknown key's 404)."""
    described = _call(manager.describe, name)
    if not principal.owns(described["org"]):
        raise ApiError(404, "unknown_key", f"no key named {name!r}")
    return manager


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except KeyManagerError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None


@router.get("")
def list_keys(
    principal: Principal = Depends(operator_only), services: Services = Depends(get_services)
) -> dict[str, Any]:
    return {"keys": [key for key in _call(_manager(services).list) if principal.owns(key["org"])]}


@router.get("/{name}")
def get_key(
    name: str, principal: Principal = Depends(operator_only), services: Services = Depends(get_services)
) -> dict[str, Any]:
    return _call(_owned(_manager(services), name, principal).describe, name)


@router.post("/{name}/rotate")
def rotate_key(
    name: str, principal: Principal = Depends(operator_only), services: Services = Depends(get_services)
) -> dict[str, Any]:
    result = _call(_owned(_manager(services), name, principal).rotate, name)
    log.info(
        "key %s rotated to v%d by %s/%s", name, result["current_version"], principal.org, principal.token_id
    )
    return result


@router.post("/{name}/disable")
def disable_key(
    name: str, principal: Principal = Depends(operator_only), services: Services = Depends(get_services)
) -> dict[str, Any]:
    result = _call(_owned(_manager(services), name, principal).disable, name)
    log.warning("key %s disabled by %s/%s", name, principal.org, principal.token_id)
    return result


@router.post("/{name}/enable")
def enable_key(
    name: str, principal: Principal = Depends(operator_only), services: Services = Depends(get_services)
) -> dict[str, Any]:
    result = _call(_owned(_manager(services), name, principal).enable, name)
    log.info("key %s enabled by %s/%s", name, principal.org, principal.token_id)
    return result
