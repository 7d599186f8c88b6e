"""The Redis clients of every process, made in one place.

Every client has socket timeouts, so a partition (packets dropped, no reset) turns into an
error instead of a call that never returns, TCP keepalive, so a dead peer is noticed on an
idle connection too, and a few retries, so that the first command after a Redis restart,
which meets a connection the server closed, reconnects instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu.utils.url import maybe_sanitize_url
from redis import Redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from taskdispatch.settings import Settings

__all__ = ["api_client", "lease_client", "masked", "store_client"]

# An API request during an outage should answer 503 within about a second, not wait out
# redis-py's default of ten retries; three are enough to replace a closed connection.
_API_RETRIES = 3


def masked(url: str) -> str:
    """The URL with its password shown as ***, for logs and messages (kombu's masking,
    applied to each URL of a `;`-separated list, as Celery writes Sentinel URLs)."""
    return ";".join(str(maybe_sanitize_url(part, mask="***")) for part in url.split(";"))


def store_client(
    settings: Settings,
    *,
    timeout_s: float = 10.0,
    on_connect: Callable[[Any], None] | None = None,
) -> Redis:
    """A client of the task store with redis-py's default retries (about 5 s of them).

    `timeout_s` bounds one command; a blocking command (BLPOP) needs its own wait on top.
    `on_connect(connection)`, if given, replaces redis-py's handshake on every new
    connection and must call `connection.on_connect()` itself.
    """
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=10,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 5.0),
        socket_keepalive=True,
        redis_connect_func=on_connect,
    )


def lease_client(settings: Settings) -> Redis:
    """A client that fails fast, for lease renewals: one attempt, bounded by a sixth of the TTL.

    The lease's fencing decision is taken between attempts (see `lease.py`); a renewal that
    retried or waited for long would push that decision past the lease's expiry.
    """
    timeout_s = max(0.1, settings.lease_ttl_s / 6)
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


def api_client(settings: Settings) -> AsyncRedis:
    """The API's asyncio client: a bounded pool, and a prompt error while Redis is away.

    The pool blocks (up to `redis_pool_timeout_s`) instead of failing when all
    `redis_max_connections` are in use, so a burst of requests queues. A pool given to
    redis-py brings its own retry policy, and without one a connection gets none: the first
    request after every Redis restart failed with 503 (tests/faults/test_redis_restart.py).
    """
    return AsyncRedis(
        connection_pool=BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_s,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            socket_keepalive=True,
            health_check_interval=10,
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), _API_RETRIES),
        )
    )
