"""Backoff, circuit breaker, outbox ids and fault injection: the pure parts of the delivery engine."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest

from connectors.emulators.faults import ALL_FAULTS, FaultInjector, FaultPlan
from connectors.sap_soap import sap_reference
from hub.delivery.backoff import Backoff
from hub.delivery.breaker import CircuitBreaker
from hub.delivery.outbox import delivery_id, message_uuid

pytestmark = pytest.mark.unit


def test_backoff_is_full_jitter_under_an_exponential_capped_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    assert [backoff.ceiling(n) for n in (1, 2, 3, 4, 5, 6, 100)] == [1, 2, 4, 8, 16, 30, 30]
    delays = [backoff.delay(4) for _ in range(2000)]
    assert all(0 <= d <= 8 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 7.5  # spread over the whole range, not bunched


def test_breaker_opens_after_threshold_half_opens_once_and_closes_on_success() -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    breaker = CircuitBreaker(threshold=3, open_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow("sap") is None
        breaker.failure("sap")
    assert breaker.state("sap") == "closed"
    breaker.failure("sap")
    assert breaker.state("sap") == "open"
    assert breaker.allow("sap") == now[0] + dt.timedelta(seconds=10)
    assert breaker.allow("other") is None  # per target
    now[0] += dt.timedelta(seconds=10)
    assert breaker.state("sap") == "half_open"
    assert breaker.allow("sap") is None  # the one trial
    assert breaker.allow("sap") is not None  # nobody else while it runs
    breaker.failure("sap")
    assert breaker.state("sap") == "open"
    now[0] += dt.timedelta(seconds=10)
    assert breaker.allow("sap") is None
    breaker.success("sap")
    assert breaker.state("sap") == "closed" and breaker.allow("sap") is None


def test_delivery_identity_is_fixed_and_distinct_per_target() -> None:
    a, b = delivery_id("inv-c-2026-10", "provider"), delivery_id("inv-c-2026-10", "customer")
    assert a == "dlv-inv-c-2026-10-provider"
    assert message_uuid(a) == message_uuid(a) != message_uuid(b)
    assert uuid.UUID(message_uuid(a)).version == 5


def test_sap_reference_fits_sixteen_characters_and_is_stable() -> None:
    assert sap_reference("inv-short") == "inv-short"
    long_ids = [f"inv-ctr-mri-{n:03d}-2026-10" for n in range(500)]
    refs = [sap_reference(i) for i in long_ids]
    assert all(len(r) == 16 and r.startswith("LH") for r in refs)
    assert len(set(refs)) == 500 and refs == [sap_reference(i) for i in long_ids]


def test_fault_injector_queue_first_then_seeded_draw_and_validation() -> None:
    injector = FaultInjector(FaultPlan(probability=0.5, seed=42))
    injector.queue(["reject", "timeout"])
    # a queued fault not allowed for this request stays queued; the draw obeys `allowed`
    assert injector.next(allowed=("timeout",)) in (None, "timeout")
    assert injector.snapshot()["queued"] == ["reject", "timeout"]
    assert [injector.next(), injector.next()] == ["reject", "timeout"]
    injector.clear()
    injector.configure(FaultPlan(probability=0.5, seed=42))
    first = [injector.next() for _ in range(200)]
    injector.configure(FaultPlan(probability=0.5, seed=42))
    assert [injector.next() for _ in range(200)] == first  # reproducible
    assert 60 < sum(f is not None for f in first) < 140
    assert set(filter(None, first)) == set(ALL_FAULTS)
    injector.queue("drop_after_post", count=2)
    assert [injector.next(), injector.next()] == ["drop_after_post", "drop_after_post"]
    with pytest.raises(ValueError, match="unknown fault kind"):
        injector.queue("meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        injector.configure(FaultPlan(probability=1.5))
    injector.apply({"clear": True, "probability": 1.0, "kinds": ["error_5xx"], "seed": 1})
    assert injector.next() == "error_5xx"
    assert injector.snapshot()["injected"] == {"error_5xx": 1}
