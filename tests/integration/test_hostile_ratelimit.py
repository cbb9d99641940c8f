"""The configurable per-caller rate limit (hub/api/limits.py) on the real app: 429 problem+json
`rate_limited` with Retry-After, refilled by time (an injected clock, no sleeping), per token, probes exempt,
unknown tokens keyed by address, and off unless configured. Also the limiter's token bucket on its own, and
the failed-login limit per client address, which is on by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.api.limits import TokenBuckets, strict_json_error
from hub.config import Settings
from tests.helpers.api import ControlledLedger, auth, embedded_ledger, hub_client, hub_settings

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(tmp_path: Path):
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    settings = hub_settings(tmp_path, rate_limit_per_second=2.0, rate_limit_burst=3)
    with hub_client(settings, ledger, background=False) as client:
        clock = FakeClock()
        client.app.state.rate_limit.clock = clock
        yield client, clock, ledger
    ledger.close()


def test_burst_then_429_with_retry_after_then_refill(limited) -> None:
    client, clock, _ledger = limited
    for _ in range(3):
        assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200
    r = client.get("/v1/invoices", headers=auth("tok-provider"))
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited" and r.headers["Retry-After"] == "1"
    clock.now += 0.5  # one token at 2/s
    assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200
    assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 429
    clock.now += 100  # refills to the burst, not beyond
    assert [client.get("/v1/invoices", headers=auth("tok-provider")).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]


def test_limits_are_per_token_and_probes_are_exempt(limited) -> None:
    client, _clock, _ledger = limited
    for _ in range(3):
        client.get("/v1/invoices", headers=auth("tok-provider"))
    assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 429
    assert client.get("/v1/invoices", headers=auth("tok-customer")).status_code == 200
    assert all(client.get("/healthz").status_code == 200 for _ in range(10))


def test_refused_request_never_reaches_the_ledger(limited) -> None:
    client, _clock, ledger = limited
    height = ledger.height()
    answers = [
        client.post("/v1/assets", json={"id": f"a{i}", "public_key": "x"}, headers=auth("tok-provider"))
        for i in range(6)
    ]
    assert [a.status_code for a in answers][3:] == [429, 429, 429]
    assert ledger.height() == height  # the three admitted ones fail validation; none of the refused ran


def test_unknown_tokens_share_the_callers_address_bucket(limited) -> None:
    """Random tokens must not each get a fresh bucket: they are keyed by the client address."""
    client, _clock, _ledger = limited
    codes = [client.get("/v1/invoices", headers=auth(f"random-{i}")).json()["code"] for i in range(5)]
    assert codes == ["invalid_token"] * 3 + ["rate_limited"] * 2
    assert client.get("/v1/invoices").json()["code"] == "rate_limited"  # no token: same address bucket
    assert client.get("/v1/invoices", headers=auth("tok-auditor")).status_code == 200


def test_off_unless_configured(tmp_path: Path) -> None:
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    with hub_client(hub_settings(tmp_path), ledger, background=False) as client:
        assert client.app.state.rate_limit is None
        assert all(
            client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200 for _ in range(50)
        )
    ledger.close()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.config import load_settings

    monkeypatch.setenv("LEDGERHUB_RATE_LIMIT_PER_SECOND", "5.5")
    monkeypatch.setenv("LEDGERHUB_RATE_LIMIT_BURST", "20")
    settings = load_settings()
    assert settings.rate_limit_per_second == 5.5 and settings.rate_limit_burst == 20


def test_bucket_memory_is_bounded() -> None:
    buckets = TokenBuckets(1.0, 1, clock=lambda: 0.0, max_keys=100)
    for i in range(1000):
        buckets.take(f"addr:{i}")
    assert len(buckets) == 100


def test_strict_json_rules() -> None:
    assert strict_json_error(b'{"a": [1, "x"]}') is None
    assert strict_json_error(b"") is None  # left to the route
    for bad in (
        b"NaN",
        b'{"a": Infinity}',
        b'"\\ud800"',
        b"\xff",
        b"[" * 2000 + b"]" * 2000,
        b"[" * 600 + b"]" * 600,
    ):
        assert strict_json_error(bad) is not None, bad[:20]
    assert strict_json_error(b"[" * 500 + b"]" * 500) is None


# --- failed authentication: limited per client address by default (ADR 0030) -------------------------


@pytest.fixture
def default_hub(tmp_path: Path):
    """The hub with default settings (no rate limit configured), its failed-login clock injected."""
    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    with hub_client(hub_settings(tmp_path), ledger, background=False) as client:
        clock = FakeClock()
        limit = getattr(client.app.state, "auth_failure_limit", None)
        assert limit is not None, "the failed-login limit is not on by default"
        limit.clock = clock
        yield client, clock
    ledger.close()


def test_failed_logins_are_limited_by_default(default_hub) -> None:
    client, clock = default_hub
    answers = [client.get("/v1/invoices", headers=auth(f"guess-{i}")) for i in range(11)]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "too_many_failed_logins" and refused.headers["Retry-After"] == "6"
    # while locked, a right token from that address is refused too: a guesser must not learn it hit one
    assert client.get("/v1/invoices", headers=auth("tok-provider")).json()["code"] == "too_many_failed_logins"
    assert client.get("/healthz").status_code == 200  # probes are never limited
    clock.now += 6  # 10 a minute: one more attempt every 6 s
    assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200
    assert client.get("/v1/invoices", headers=auth("guess-x")).status_code == 401
    assert client.get("/v1/invoices", headers=auth("guess-y")).status_code == 429


def test_successful_logins_cost_nothing_and_every_401_counts(default_hub) -> None:
    client, _clock = default_hub
    assert all(client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200 for _ in range(30))
    codes = [client.get("/v1/invoices").json()["code"] for _ in range(5)]  # no token at all
    codes += [client.get("/v1/invoices", headers=auth(f"guess-{i}")).json()["code"] for i in range(6)]
    assert codes == ["unauthenticated"] * 5 + ["invalid_token"] * 5 + ["too_many_failed_logins"]


def test_failed_logins_are_counted_per_address(default_hub) -> None:
    client, _clock = default_hub
    for i in range(11):
        client.get("/v1/invoices", headers=auth(f"guess-{i}"))
    assert client.get("/v1/invoices", headers=auth("tok-provider")).status_code == 429
    other = TestClient(client.app, raise_server_exceptions=False, client=("203.0.113.9", 40000))
    assert other.get("/v1/invoices", headers=auth("tok-provider")).status_code == 200
    assert other.get("/v1/invoices", headers=auth("guess")).status_code == 401


def test_failed_login_limit_is_configurable_and_can_be_turned_off(tmp_path: Path, monkeypatch) -> None:
    from hub.config import load_settings

    ledger = ControlledLedger(embedded_ledger(tmp_path / "ledger"))
    with hub_client(hub_settings(tmp_path, auth_failures_per_minute=0), ledger, background=False) as client:
        assert client.app.state.auth_failure_limit is None
        assert {client.get("/v1/invoices", headers=auth(f"g-{i}")).status_code for i in range(30)} == {401}
    with hub_client(hub_settings(tmp_path, auth_failures_per_minute=2), ledger, background=False) as client:
        assert [client.get("/v1/invoices", headers=auth(f"g-{i}")).status_code for i in range(3)] == [
            401, 401, 429]
    ledger.close()
    monkeypatch.delenv("LEDGERHUB_AUTH_FAILURES_PER_MINUTE", raising=False)
    assert Settings().auth_failures_per_minute == 10
    monkeypatch.setenv("LEDGERHUB_AUTH_FAILURES_PER_MINUTE", "25")
    assert load_settings().auth_failures_per_minute == 25
