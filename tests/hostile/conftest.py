"""Fixtures of the hostile-input tests: the real app on the session Redis, and a store probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.consistency import check_consistency
from taskdispatch.keys import Keys
from taskdispatch.settings import Settings
from tests.api.conftest import serve

PREFIX = "tdhostile:"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=PREFIX)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


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
