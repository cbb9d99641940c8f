"""Request limits: a per-caller rate limit (429 `rate_limited`) and strict JSON bodies (400 `malformed_json`).

Strict JSON: FastAPI parses route bodies with the standard library, which accepts `NaN`, `Infinity`, lone
surrogates and nests until the interpreter's recursion limit (then a generic 400). The usage route already
parses with orjson, which refuses all of these. `StrictJsonMiddleware` gives every JSON body that same
rule, once, before routing: one stable code for every malformed body, and no `NaN` reaching any model.

Rate limiting: one token bucket per caller, refused with 429 `rate_limited` and `Retry-After`.

Why this shape:
* The caller is the bearer token when the hub knows it, so a device that floods the hub slows only itself
  and one org cannot starve another. A request with no token or an unknown token is keyed by the client
  address instead: otherwise an attacker would get a fresh, full bucket with every random token.
* The limiter is ASGI middleware outside the body limit and the routers, so a refused request costs no
  body read, no JSON parse, no database or ledger work.
* Buckets live in a bounded LRU map: a hostile caller cycling addresses cannot grow memory without bound.
  State is per process; with several hub replicas each enforces the limit on the traffic it sees (put a
  shared limiter in the proxy in front when an exact global limit matters, see docs/operator-guide.md).
* Probes (`/healthz`, `/readyz`, `/metrics`) are never limited: an orchestrator must always see the truth.
* Off unless configured (`LEDGERHUB_RATE_LIMIT_PER_SECOND` > 0), so existing deployments and benchmarks
  behave as before; `LEDGERHUB_RATE_LIMIT_BURST` is the bucket size (default: one second's worth, min 1).

Failed authentication is limited by default (ADR 0030): each client address may fail authentication
(`401`) `LEDGERHUB_AUTH_FAILURES_PER_MINUTE` times a minute (default 10, as a burst, refilled evenly; 0 =
off). Past that, every request from the address is refused with 429 `too_many_failed_logins` and
`Retry-After` until the bucket refills, a valid token included: letting a right guess through while the
wrong ones are refused would tell a guesser when it has found a token. A request with a token the hub does
not know is charged before it runs (it will fail; concurrent guesses cannot overdraw the bucket); other
401s (no token, an expired token) are charged when answered.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import problem_response
from hub.api.problems import ApiError
from hub.config import Settings, secret_value

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Token buckets keyed by caller: `rate` tokens per second, at most `burst` stored."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_BUCKETS) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until `key` has a whole token (0.0: it has one now); takes nothing."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def _fingerprint(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()[:16]


class RateLimitMiddleware:
    """Refuse requests over the caller's rate with 429 problem+json `rate_limited` and `Retry-After`."""

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets, known_tokens: Iterable[str] = (),
                 exempt: frozenset[str] = EXEMPT_PATHS) -> None:
        self.app = app
        self.buckets = buckets
        # fingerprints, not the tokens: the limiter keeps no secret in memory longer than the settings do
        self.known = frozenset(_fingerprint(t.encode()) for t in known_tokens)
        self.exempt = exempt

    def caller(self, scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and token:
                    fingerprint = _fingerprint(token.strip())
                    if fingerprint in self.known:
                        return "token:" + fingerprint
                break
        client = scope.get("client")
        return "addr:" + (str(client[0]) if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self.caller(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        await _too_many(scope, receive, send, "rate_limited", "Too many requests", "over the configured rate",
                        wait)


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" and token.strip() else None
    return None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return "addr:" + (str(client[0]) if client else "unknown")


async def _too_many(scope: Scope, receive: Receive, send: Send, code: str, title: str, detail: str,
                    wait: float) -> None:
    retry_after = max(1, math.ceil(wait))
    error = ApiError(429, code, title, f"{detail}; retry in {retry_after} s", retry_after=retry_after)
    response = problem_response(error)
    response.headers["Retry-After"] = str(retry_after)
    await response(scope, receive, send)


class FailedAuthLimitMiddleware:
    """Refuse a client address that failed authentication too often (429 `too_many_failed_logins`)."""

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets, known_tokens: Iterable[str] = (),
                 exempt: frozenset[str] = EXEMPT_PATHS) -> None:
        self.app = app
        self.buckets = buckets
        self.known = frozenset(_fingerprint(t.encode()) for t in known_tokens)
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        address = _address(scope)
        token = _bearer(scope)
        wait = self.buckets.wait(address)
        charged = False
        if wait <= 0 and token is not None and _fingerprint(token) not in self.known:
            wait = self.buckets.take(address)  # an unknown token fails: pay before running it
            charged = wait <= 0
        if wait > 0:
            await _too_many(scope, receive, send, "too_many_failed_logins", "Too many failed logins",
                            "this address failed authentication too often", wait)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status == 401 and not charged:
            self.buckets.take(address)


def install_failed_auth_limit(app: ASGIApp, settings: Settings, *,
                              clock: Callable[[], float] = time.monotonic) -> TokenBuckets | None:
    """Limit failed authentication per client address (on by default); returns the buckets or None (off)."""
    per_minute = settings.auth_failures_per_minute
    if per_minute <= 0:
        return None
    buckets = TokenBuckets(per_minute / 60.0, per_minute, clock=clock)
    tokens = [secret_value(t) for t in settings.tokens]
    app.add_middleware(FailedAuthLimitMiddleware, buckets=buckets, known_tokens=tokens)  # type: ignore[attr-defined]
    return buckets


def install_rate_limit(app: ASGIApp, settings: Settings, *,
                       clock: Callable[[], float] = time.monotonic) -> TokenBuckets | None:
    """Add the limiter to a FastAPI app when the settings enable it; returns the buckets (tests) or None."""
    rate = settings.rate_limit_per_second
    if rate <= 0:
        return None
    burst = settings.rate_limit_burst or max(1, math.ceil(rate))
    buckets = TokenBuckets(rate, burst, clock=clock)
    tokens = [secret_value(t) for t in settings.tokens]
    app.add_middleware(RateLimitMiddleware, buckets=buckets, known_tokens=tokens)  # type: ignore[attr-defined]
    return buckets


MAX_JSON_DEPTH = 512  # orjson refuses deeper documents on its own (1024); this is the hub's own, lower bound


def _too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Nesting depth of a parsed document, iteratively (no recursion), visiting containers only."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def strict_json_error(raw: bytes) -> str | None:
    """Why `raw` is not acceptable JSON (None when it is): orjson's rules (RFC 8259: no NaN/Infinity, valid
    UTF-8, no lone surrogates) plus the depth bound. An empty body is left to the route (it may need none)."""
    if not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc).split(":")[0]
    if (raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH) and _too_deep(value):
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    return None


class StrictJsonMiddleware:
    """Read a JSON request body in full (the body limit outside bounds it), check it strictly, and hand the
    same bytes on to the app. Non-JSON content types are left alone (the routes refuse them themselves)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def _is_json(scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                media = value.split(b";")[0].strip().lower()
                return media == b"application/json" or media.endswith(b"+json")
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH") \
                or not self._is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except ApiError as exc:  # the body limit outside refused the stream
            await problem_response(exc)(scope, receive, send)
            return
        raw = b"".join(chunks)
        reason = strict_json_error(raw)
        if reason is not None:
            error = ApiError(400, "malformed_json", "Malformed JSON",
                             f"the body is not valid JSON ({reason})")
            await problem_response(error)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
