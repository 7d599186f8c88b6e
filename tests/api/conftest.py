"""Fixtures for the API tests: the real app, its lifespan and the session's private Redis.

httpx's ASGITransport does not run the lifespan, so `serve` enters it explicitly: the
app under test builds and closes its dispatcher exactly as under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from tests.support.api import TOKEN, CreateTask, create_body, serve


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix="tdtest:")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        yield client


@pytest.fixture
def dispatcher(app: FastAPI, client: httpx.AsyncClient) -> TaskDispatcher:
    """The dispatcher the running app uses (for arranging state the API cannot reach)."""
    task_dispatcher: TaskDispatcher = app.state.dispatcher
    return task_dispatcher


@pytest.fixture
def secured_app(settings: Settings) -> FastAPI:
    return create_app(settings.model_copy(update={"api_token": TOKEN}))


@pytest.fixture
async def secured_client(secured_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(secured_app) as client:
        yield client


@pytest.fixture
def create_task(client: httpx.AsyncClient) -> CreateTask:
    """Create a task through the API and return its task_info."""

    async def create(account_id: str = "account_1", **overrides: Any) -> dict[str, Any]:
        response = await client.post("/api/v1/tasks/", json=create_body(account_id, **overrides))
        assert response.status_code == 200, response.text
        info: dict[str, Any] = response.json()["task_info"]
        return info

    return create
