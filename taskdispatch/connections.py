"""Synchronous Redis clients of the worker, the beat and the command-line tools, made in one place.

Every client has socket timeouts, so a partition (packets dropped, no reset) turns into an
error instead of a call that never returns, and TCP keepalive, so a dead peer is noticed
on an idle connection too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskdispatch.settings import Settings

__all__ = ["lease_client", "store_client"]


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
