"""Specification of GET /api/v1/health and of building the app."""

from __future__ import annotations

from datetime import datetime

import httpx

from api.main import create_app
from taskdispatch.redis_server import free_port
from taskdispatch.settings import Settings
from tests.api.conftest import serve


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
