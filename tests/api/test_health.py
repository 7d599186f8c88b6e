"""Specification of GET /api/v1/health and of building the app."""

from __future__ import annotations

from datetime import datetime

import httpx

from api.main import create_app
from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.settings import Settings
from tests.support.api import serve


async def test_health_returns_document_fields(client: httpx.AsyncClient) -> None:
    """Health answers status "healthy", the version and an ISO timestamp with offset (3.1)."""
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["version"]) == ("healthy", "1.0.0")
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None


async def test_health_answers_while_redis_is_unreachable() -> None:
    """Creating and starting the app touches no Redis, and health stays a pure liveness check."""
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 200


async def test_ready_with_redis_and_no_processes_is_200_naming_them(
    client: httpx.AsyncClient,
) -> None:
    """Redis answers: 200 "ready"; no beat or worker heartbeat yet, so both are named down."""
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["redis"]) == ("ready", True)
    assert (body["beats_alive"], body["workers_alive"]) == (0, 0)
    assert body["down"] == ["beats", "workers"]


async def test_ready_counts_fresh_heartbeats(client: httpx.AsyncClient, dispatcher) -> None:
    """A fresh beat and worker heartbeat count as alive, and nothing is named down."""
    now = dispatcher.clock()
    await dispatcher.redis.zadd(dispatcher.keys.beats(), {"host:1:abc": now})
    await dispatcher.redis.zadd(dispatcher.keys.workers(), {"w1@host": now})
    body = (await client.get("/api/v1/health/ready")).json()
    assert (body["beats_alive"], body["workers_alive"], body["down"]) == (1, 1, [])


async def test_ready_without_redis_is_503_with_the_same_shape() -> None:
    """Redis unreachable: 503, status "unavailable", redis named down, counts unknown."""
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        response = await client.get("/api/v1/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["redis"], body["down"]) == ("unavailable", False, ["redis"])
    assert (body["beats_alive"], body["workers_alive"]) == (None, None)
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
