"""Per-key request-rate limits and request ids, as one ASGI middleware in front of the app.

Every response carries `x-request-id` (the client's own, when it sent one of a sane length, else a new
`req_...`). Each API key (or, for a request without a valid key, its client address) has a token bucket of
`burst` requests refilled at `per_minute`; an empty bucket answers OpenAI's 429 envelope with `Retry-After`
(seconds) and the x-ratelimit-* headers, before the request reaches any route.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    per_minute: float = 600.0       # sustained requests per minute per key
    burst: int = 120                # requests a key may send at once


class Buckets:
    """Token buckets by key; thread-safe (the app serves sync routes from a thread pool)."""

    def __init__(self, limit: RateLimit):
        self.limit = limit
        self._state: dict[str, tuple[float, float]] = {}      # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> tuple[bool, float, float]:
        """(allowed, tokens left, seconds until one token is back)."""
        now = time.monotonic() if now is None else now
        rate = self.limit.per_minute / 60.0
        with self._lock:
            tokens, last = self._state.get(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - last) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._state[key] = (tokens, now)
            if len(self._state) > 100_000:            # forget idle keys rather than grow without bound
                self._state = {k: v for k, v in self._state.items() if now - v[1] < 600}
        return allowed, tokens, 0.0 if allowed else (1.0 - tokens) / rate


def error_body(message: str, code: str, type_: str = "requests") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class Gate:
    """ASGI middleware: request ids on every response, the rate limit on /v1/ paths. `identify(headers, client)`
    names the bucket of a request."""

    def __init__(self, app, limit: RateLimit, identify):
        self.app, self.buckets, self.identify = app, Buckets(limit), identify

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if 0 < len(given) <= 128 and given.isprintable() else "req_" + secrets.token_hex(16)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        if scope["path"].startswith("/v1/"):
            key = self.identify(headers, (scope.get("client") or ("?", 0))[0])
            allowed, left, wait = self.buckets.take(key)
            if not allowed:
                limit = self.buckets.limit
                body = error_body(f"Rate limit reached: {limit.per_minute:g} requests per minute for this key "
                                  f"(bursts of {limit.burst}). Try again in {wait:.1f}s.", "rate_limit_exceeded")
                extra = [(b"retry-after", str(max(1, math.ceil(wait))).encode()),
                         (b"x-ratelimit-limit-requests", str(int(limit.per_minute)).encode()),
                         (b"x-ratelimit-remaining-requests", b"0"),
                         (b"x-ratelimit-reset-requests", f"{wait:.3f}s".encode())]
                await send_with_id({"type": "http.response.start", "status": 429,
                                    "headers": [(b"content-type", b"application/json"), *extra]})
                await send_with_id({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send_with_id)
