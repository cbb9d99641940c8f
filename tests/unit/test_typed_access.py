"""Typed objects are read by attribute or through a Protocol, not probed with getattr defaults: a rotating
signer is pinned through `RotatingSigner`, the delivery metrics take the app's `Metrics`, the proof hook
reads the services' `gateway` field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from hub.audit.proof import _ledger_org
from hub.delivery.metrics import DeliveryMetrics, attach
from hub.keys.signer import RotatingSigner, SoftwareSigner, pinned
from hub.metrics import Metrics


class _Rotating:
    def __init__(self, current: Any) -> None:
        self.current = current

    def pinned(self) -> Any:
        return self.current


def test_a_rotating_signer_is_pinned_and_a_plain_one_is_itself() -> None:
    plain = SoftwareSigner()
    assert not isinstance(plain, RotatingSigner) and pinned(plain) is plain
    rotating = _Rotating(plain)
    assert isinstance(rotating, RotatingSigner) and pinned(rotating) is plain  # type: ignore[arg-type]


def test_delivery_metrics_attach_to_the_apps_registry_or_not_at_all() -> None:
    assert attach(None, db=None) is None  # type: ignore[arg-type]
    attached = attach(Metrics(), db=None)  # type: ignore[arg-type]
    assert isinstance(attached, DeliveryMetrics)
    with pytest.raises(AttributeError):
        attach(object(), db=None)  # type: ignore[arg-type] - not Metrics: no silent None any more


@dataclass
class _Services:
    ledger: Any = None
    gateway: Any = None


class _Gateway:
    def ledger_org(self, org: str) -> str:
        return f"acts-as-{org}"


def test_the_proof_hook_maps_the_org_through_the_gateway_field() -> None:
    assert _ledger_org(_Services(), "CustomerMSP") == "CustomerMSP"
    assert _ledger_org(_Services(gateway=_Gateway()), "CustomerMSP") == "acts-as-CustomerMSP"
    with pytest.raises(AttributeError):
        _ledger_org(object(), "CustomerMSP")  # type: ignore[arg-type] - no gateway field: a bug, not a default
