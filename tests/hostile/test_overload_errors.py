"""Redis busy or refusing: clear 503s that say what is wrong, never a 500 or a false diagnosis."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
import redis.asyncio
import redis.exceptions
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.settings import Settings
from tests.support.api import create_body, error_body_ok, serve
from tests.support.store import consistent


async def test_more_concurrent_requests_than_pool_connections_get_503_retry_after(
    client: httpx.AsyncClient, raw: redis.asyncio.Redis
) -> None:
    """300 concurrent PATCHes on one process (pool of 100): 200 or 503 + Retry-After, no 500."""
    ids = [
        (await client.post("/api/v1/tasks/", json=create_body(f"acct-{i}"))).json()["task_id"]
        for i in range(5)
    ]

    async def patch(i: int) -> httpx.Response:
        return await client.patch(f"/api/v1/tasks/{ids[i % 5]}", json={"interval": 60 + i % 7})

    responses = await asyncio.gather(*(patch(i) for i in range(300)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 100
    for response in responses:
        if response.status_code == 503:
            assert error_body_ok(response.json())
            assert "并发请求" in response.json()["error"]
            assert response.headers["Retry-After"] == "1"
    assert await consistent(raw) == []


async def test_no_free_pool_connection_within_the_timeout_is_503_retry_after(
    settings: Settings,
) -> None:
    """Every connection of the API's pool busy past redis_pool_timeout_s: 503 saying so,
    with Retry-After, not a false "Redis cannot be reached"."""
    app = create_app(
        settings.model_copy(update={"redis_max_connections": 1, "redis_pool_timeout_s": 0.2})
    )
    async with serve(app) as client:
        pool = app.state.dispatcher.redis.connection_pool
        held = await pool.get_connection()  # the pool's only connection, taken
        try:
            response = await client.get("/api/v1/tasks/")
        finally:
            await pool.release(held)
        assert (await client.get("/api/v1/tasks/")).status_code == 200
    assert response.status_code == 503
    assert error_body_ok(response.json())
    assert "并发请求" in response.json()["error"]
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    ],
    ids=["read-only-replica", "out-of-memory"],
)
async def test_redis_refusing_writes_is_503_naming_the_condition(
    app: FastAPI,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    error: redis.exceptions.RedisError,
) -> None:
    """READONLY (failover) or OOM (maxmemory): 503 saying Redis refuses writes, not a 500."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(app.state.dispatcher, "create_task", refuse)
    response = await client.post("/api/v1/tasks/", json=create_body())
    assert response.status_code == 503, response.text
    assert error_body_ok(response.json())
    assert "拒绝写入" in response.json()["error"]
    assert type(error).__name__ in response.json()["error"]
