"""Server-side and client-side counts of Redis work: commandstats deltas and round trips."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.connection import AbstractConnection

__all__ = ["RoundTrips", "commandstats", "connect", "delta", "flush"]


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """{command: (calls, usec)} from INFO commandstats (commands run by Lua included)."""
    info = client.info("commandstats")
    out: dict[str, tuple[int, int]] = {}
    for key, value in info.items():
        name = key.removeprefix("cmdstat_")
        out[name] = (int(value["calls"]), int(value["usec"]))
    return out


def delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Commands run between two snapshots, without the INFO calls that took them."""
    out = {}
    for name, (calls, usec) in after.items():
        if name == "info":
            continue
        b_calls, b_usec = before.get(name, (0, 0))
        if calls > b_calls:
            out[name] = (calls - b_calls, usec - b_usec)
    return out


class RoundTrips:
    """Counts request writes on every redis-py connection of this process while active.

    redis-py sends a single command, and a whole pipeline, with one `send_packed_command`
    and then reads the replies: one call is one round trip (kombu's Redis transport uses
    redis-py too, so publishes are counted as well).
    """

    def __init__(self) -> None:
        self.count = 0
        self._orig: Callable[..., Any] | None = None

    def __enter__(self) -> RoundTrips:
        self._orig = orig = AbstractConnection.send_packed_command
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            orig(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._orig is not None:
            AbstractConnection.send_packed_command = self._orig  # type: ignore[method-assign]


def connect(url: str) -> redis.Redis:
    """A client for the bench's own bookkeeping: big flushes and loads outlast redis-py's
    default 5 s socket timeout."""
    return redis.Redis.from_url(url, socket_timeout=300)


def flush(client: redis.Redis, *, timeout_s: float = 300.0) -> None:
    """Empty the bench Redis, freeing in the background (a synchronous FLUSHALL of 1M tasks
    blocks Redis for seconds), and return once the memory is actually released."""
    client.flushall(asynchronous=True)
    deadline = time.monotonic() + timeout_s
    while int(client.info("memory").get("lazyfree_pending_objects", 0)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("Redis did not finish freeing the flushed data")
        time.sleep(0.1)
