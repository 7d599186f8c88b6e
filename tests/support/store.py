"""The whole content of a test Redis, for "nothing changed" checks, and its consistency."""

from __future__ import annotations

from typing import Any

import redis.asyncio

from taskdispatch.service.consistency import check_consistency
from taskdispatch.store.keys import Keys

__all__ = ["PREFIX", "consistent", "store_state"]

# The key prefix of the hostile-input tests' store.
PREFIX = "tdhostile:"


async def store_state(client: redis.asyncio.Redis) -> dict[str, Any]:
    """Every key with its type and value (DUMP-free, readable in a diff)."""
    state: dict[str, Any] = {}
    async for key in client.scan_iter(count=1000):
        kind = await client.type(key)
        if kind == "string":
            state[key] = await client.get(key)
        elif kind == "hash":
            state[key] = await client.hgetall(key)
        elif kind == "zset":
            state[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            state[key] = await client.lrange(key, 0, -1)
        elif kind == "stream":
            state[key] = await client.xlen(key)
        else:
            state[key] = kind
    return state


async def consistent(client: redis.asyncio.Redis) -> list[str]:
    return await check_consistency(client, Keys(PREFIX))
