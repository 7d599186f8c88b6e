"""The Redis clients of every process, made in one place.

Every client has socket timeouts, so a partition (packets dropped, no reset) turns into an
error instead of a call that never returns, TCP keepalive, so a dead peer is noticed on an
idle connection too, and the API's client a few retries, so that its first command after a
Redis restart, which meets a connection the server closed, reconnects instead of failing.

A URL setting may name a Redis Sentinel set instead of one server, in the form Celery users
write for the broker: `sentinel://[[user]:password@]host[:port][/db][?ssl_...];sentinel://
host2[:port];...`. The clients then ask the Sentinels for the master named
`redis_sentinel_master`, and ask again whenever a connection to it fails, so every process
follows a failover by itself (redis-py's `Sentinel.master_for`, kombu's `sentinel` transport
for the broker). The URL's password is the master's; the Sentinels' own is
`redis_sentinel_password`. `ssl_*` options make every connection TLS, to the Sentinels and
to the data nodes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from taskdispatch.domain.exceptions import WriteNotReplicatedError
from taskdispatch.settings import SentinelUrl, Settings

__all__ = [
    "api_client",
    "broker_client",
    "broker_transport_options",
    "broker_url",
    "lease_client",
    "masked",
    "sentinel_clients",
    "store_client",
    "stream_client",
]

# An API request during an outage should answer 503 within about a second, not wait out
# redis-py's default of ten retries; three are enough to replace a closed connection.
_API_RETRIES = 3
# Beyond WAIT's own timeout, how long its reply may take to arrive before the write counts
# as unconfirmed (a slow network, a busy master).
_WAIT_REPLY_SLACK_S = 5.0


def masked(url: str) -> str:
    """The URL with its password shown as ***, for logs and messages; each URL of a
    `;`-separated list (as Celery writes Sentinel URLs) is masked.

    It never raises, whatever the URL: it runs in error paths, on URLs that may be invalid.
    The user information ends at the last `@` of a part, so a password holding an unencoded
    `/`, `?` or `#` (which would end the host for a URL parser) is still hidden.
    """
    parts: list[str] = []
    for piece in url.split(";"):
        if parts and "://" not in piece:
            parts[-1] += f";{piece}"  # a ';' inside the previous URL, in its password
        else:
            parts.append(piece)
    return ";".join(_masked_part(part) for part in parts)


def _masked_part(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    if separator:
        user, colon, _ = userinfo.partition(":")
        hidden = f"{user}:***" if colon else user
    else:
        # Not a URL at all: what precedes the '@' may be any part of a password.
        hidden = "***"
    return f"{scheme}{separator}{hidden}@{host}"


def _sentinel_options(
    settings: Settings, parsed: SentinelUrl, *, timeout_s: float, asynchronous: bool = False
) -> dict[str, Any]:
    """How to reach the Sentinels themselves: their password, the URL's TLS, timeouts.

    One attempt per Sentinel: with redis-py's default retries (10, about 4 s when refused)
    a master lookup spent that long on a Sentinel that is down before it asked the next
    one, in every client and every process (measured: 4.1 s per dead Sentinel). Whoever
    asked for the master retries the whole lookup (the master connection's own retries).
    """
    return {
        "password": settings.redis_sentinel_password,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "socket_keepalive": True,
        "retry": (AsyncRetry if asynchronous else Retry)(NoBackoff(), 0),
        **parsed.tls_options(),
    }


def _client(
    settings: Settings,
    url: str,
    parsed: SentinelUrl | None,
    *,
    sentinel_timeout_s: float,
    **options: Any,
) -> Redis:
    """A client of the server `url` names, or of the master its Sentinels (`parsed`, the
    URL as the settings parsed it) name."""
    if parsed is None:
        return Redis.from_url(url, **options)
    manager = Sentinel(
        parsed.sentinels,
        sentinel_kwargs=_sentinel_options(settings, parsed, timeout_s=sentinel_timeout_s),
    )
    client: Redis = manager.master_for(
        settings.redis_sentinel_master, **options, **parsed.master_options()
    )
    return client


def sentinel_clients(settings: Settings, parsed: SentinelUrl, *, timeout_s: float) -> list[Redis]:
    """One client per Sentinel of a Sentinel URL the settings parsed (startup checks)."""
    options = _sentinel_options(settings, parsed, timeout_s=timeout_s)
    return [Redis(host=host, port=port, **options) for host, port in parsed.sentinels]


def store_client(
    settings: Settings,
    *,
    timeout_s: float = 10.0,
    on_connect: Callable[[Any], None] | None = None,
) -> Redis:
    """A client of the task store.

    `timeout_s` bounds one command; a blocking command (BLPOP) needs its own wait on top.
    `on_connect(connection)`, if given, replaces redis-py's handshake on every new
    connection (after a failover too: it then meets the new master) and must call
    `connection.on_connect()` itself.
    """
    connect_timeout_s = min(timeout_s, 5.0)
    return _client(
        settings,
        settings.redis_url,
        settings.redis_sentinel,
        sentinel_timeout_s=connect_timeout_s,
        decode_responses=True,
        health_check_interval=10,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        socket_keepalive=True,
        redis_connect_func=on_connect,
    )


def lease_client(settings: Settings) -> Redis:
    """A client that fails fast, for lease renewals: one attempt, bounded by a sixth of the TTL.

    The lease's fencing decision is taken between attempts (see `lease.py`); a renewal that
    retried or waited for long would push that decision past the lease's expiry. Asking the
    Sentinels for the master is bounded the same way.
    """
    timeout_s = max(0.1, settings.lease_ttl_s / 6)
    return _client(
        settings,
        settings.redis_url,
        settings.redis_sentinel,
        sentinel_timeout_s=timeout_s,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


def broker_client(settings: Settings, *, timeout_s: float) -> Redis | None:
    """A client of the broker to PING it and read its run_id, or None for a broker that is
    not Redis (other brokers: the callers trust the broker's own reconnection)."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")) and settings.broker_sentinel is None:
        return None
    return _client(
        settings,
        url,
        settings.broker_sentinel,
        sentinel_timeout_s=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def broker_url(settings: Settings) -> str:
    """The Celery broker URL: the setting, a Sentinel one in the form kombu can fail over with."""
    parsed = settings.broker_sentinel
    return parsed.kombu_url() if parsed is not None else settings.effective_broker_url


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options for a Sentinel broker (the master's name, how to reach the
    Sentinels); empty for any other broker."""
    parsed = settings.broker_sentinel
    if parsed is None:
        return {}
    return {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": _sentinel_options(settings, parsed, timeout_s=5.0),
    }


class _BlockingSentinelPool(AsyncSentinelConnectionPool, BlockingConnectionPool):
    """The master's connections, bounded like the API's pool: wait for a free one."""


@dataclass(frozen=True)
class _Durability:
    """How many replicas must confirm a transaction, and how long to wait for them."""

    replicas: int
    timeout_ms: int


class _ApiRedis(AsyncRedis):
    """The API's client: with `durability` set, every transaction waits for replicas."""

    durability: _Durability | None = None

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> AsyncPipeline:
        if not transaction or self.durability is None:
            return super().pipeline(transaction, shard_hint)
        return _ReplicatedPipeline(
            self.connection_pool,
            self.response_callbacks,
            transaction,
            shard_hint,
            durability=self.durability,
        )


class _ReplicatedPipeline(AsyncPipeline):
    """A transaction that returns only once `WAIT` saw enough replicas acknowledge it.

    WAIT counts the replicas that acknowledged everything *this connection* wrote, so it
    must follow the EXEC on the same connection, before the pipeline hands the connection
    back to the pool; a WAIT on another connection could confirm nothing. Replication stays
    asynchronous: a confirmed write survives a failover to one of the replicas that
    acknowledged it, an unconfirmed one (`WriteNotReplicatedError`) was applied on the
    master and may or may not.
    """

    def __init__(
        self,
        connection_pool: Any,
        response_callbacks: Any,
        transaction: bool,
        shard_hint: str | None,
        *,
        durability: _Durability,
    ) -> None:
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)
        self.durability = durability

    async def _execute_transaction(
        self, connection: Any, commands: Any, raise_on_error: Any
    ) -> Any:
        replies = await super()._execute_transaction(connection, commands, raise_on_error)
        wanted, timeout_ms = self.durability.replicas, self.durability.timeout_ms
        try:
            await connection.send_command("WAIT", wanted, timeout_ms)
            confirmed = int(
                await connection.read_response(timeout=timeout_ms / 1000 + _WAIT_REPLY_SLACK_S)
            )
        except (RedisConnectionError, RedisTimeoutError, OSError):
            # Raised as is, redis-py's retry would send the whole MULTI again, unwatched.
            await connection.disconnect()
            confirmed = -1
        if confirmed < wanted:
            raise WriteNotReplicatedError(
                confirmed=max(confirmed, 0), required=wanted, timeout_ms=timeout_ms
            )
        return replies


def api_client(settings: Settings) -> AsyncRedis:
    """The API's asyncio client: a bounded pool, and a prompt error while Redis is away.

    The pool blocks (up to `redis_pool_timeout_s`) instead of failing when all
    `redis_max_connections` are in use, so a burst of requests queues. A pool given to
    redis-py brings its own retry policy, and without one a connection gets none: the first
    request after every Redis restart failed with 503 (tests/faults/test_redis_restart.py).
    With `redis_min_replicas` set, every transaction (every write of the API) is confirmed
    by that many replicas before it returns (`_ReplicatedPipeline`).
    """
    options: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout_s,
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry": AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), _API_RETRIES),
    }
    url = settings.redis_url
    parsed = settings.redis_sentinel
    if parsed is not None:
        manager = AsyncSentinel(
            parsed.sentinels,
            sentinel_kwargs=_sentinel_options(settings, parsed, timeout_s=5.0, asynchronous=True),
        )
        client: _ApiRedis = manager.master_for(
            settings.redis_sentinel_master,
            redis_class=_ApiRedis,
            connection_pool_class=_BlockingSentinelPool,
            **options,
            **parsed.master_options(),
        )
    else:
        client = _ApiRedis(connection_pool=BlockingConnectionPool.from_url(url, **options))
    if settings.redis_min_replicas > 0:
        client.durability = _Durability(settings.redis_min_replicas, settings.redis_wait_timeout_ms)
    return client


def stream_client(settings: Settings, *, client_name: str, timeout_s: float) -> AsyncRedis:
    """A client of one connection for one live event stream (a long blocking XREAD).

    Its own connection, named so that CLIENT LIST shows what holds it; with a Sentinel URL
    it is a connection to the master, found again after a failover.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "client_name": client_name,
        "socket_connect_timeout": 5,
        "socket_timeout": timeout_s,
    }
    parsed = settings.redis_sentinel
    if parsed is None:
        return AsyncRedis.from_url(settings.redis_url, single_connection_client=True, **options)
    manager = AsyncSentinel(
        parsed.sentinels,
        sentinel_kwargs=_sentinel_options(settings, parsed, timeout_s=5.0, asynchronous=True),
    )
    pool = AsyncSentinelConnectionPool(
        settings.redis_sentinel_master, manager, **options, **parsed.master_options()
    )
    client = AsyncRedis(connection_pool=pool, single_connection_client=True)
    client.auto_close_connection_pool = True
    return client
