"""ASGI middleware: `TASKDISPATCH_RATE_LIMIT` requests per client, 429 beyond it.

A client is its bearer token (by its SHA-256, so the bucket key reveals nothing), or its
address when it sends none. Health and readiness are never limited: an orchestrator must
always be able to ask. When Redis does not answer, requests pass: they then meet the same
outage in their own handler and get its 503, not a misleading 429.
"""

from __future__ import annotations

import hashlib
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.exceptions import error_response
from taskdispatch.domain.messages import text
from taskdispatch.settings import RateLimit
from taskdispatch.store.keys import Keys
from taskdispatch.store.scripts import RATELIMIT_TAKE

__all__ = ["EXEMPT_PATHS", "RateLimiter"]

EXEMPT_PATHS = frozenset({"/api/v1/health", "/api/v1/health/ready"})


class RateLimiter:
    """Uses the Redis client of the app's dispatcher (made by the lifespan, after this)."""

    def __init__(self, app: ASGIApp, *, limit: RateLimit, keys: Keys) -> None:
        self.app = app
        self.limit = limit
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        redis: Redis = scope["app"].state.dispatcher.redis
        try:
            allowed, wait_ms = await RATELIMIT_TAKE.run_async(
                redis,
                keys=[self.keys.rate(_client_of(scope))],
                args=[self.limit.count, repr(self.limit.per_ms)],
            )
        except (RedisError, OSError):
            allowed, wait_ms = 1, 0
        if int(allowed):
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(int(wait_ms) / 1000))
        message = text(
            "rate_limited",
            count=self.limit.count,
            per=_PER[self.limit.period_name],
            retry_after=retry_after,
        )
        response = error_response(429, message, headers={"Retry-After": str(retry_after)})
        await response(scope, receive, send)


_PER = {"second": "秒", "minute": "分钟", "hour": "小时"}


def _client_of(scope: Scope) -> str:
    authorization = Headers(scope=scope).get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return "t:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    client = scope.get("client")
    return "a:" + (client[0] if client else "unknown")
