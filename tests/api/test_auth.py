"""Specification of who may call the API: the bearer token and CORS."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from api.main import create_app
from taskdispatch.settings import Settings
from tests.support.api import TOKEN, create_body, serve

PUBLIC_PATHS = {
    "/api/v1/health",
    "/api/v1/health/ready",  # for orchestrators, which send no token
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/",  # the dashboard page: no data, it asks for the token
}
# Answers only when the client leaves, which ASGITransport never does; see test_events.py.
STREAMING_PATHS = {"/api/v1/events"}


def protected_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, url) for every route of the app but the public ones, path params filled in.

    FastAPI keeps included routers nested in `app.routes`; iter_route_contexts flattens them.
    """
    return [
        (method, re.sub(r"\{[^}]+\}", "some-id", route.path))
        for route in iter_route_contexts(app.routes)
        if route.path is not None and route.path not in PUBLIC_PATHS
        for method in sorted(route.methods or ())
    ]


def test_protected_operations_cover_every_router(secured_app: FastAPI) -> None:
    """The walk below sees every endpoint of the document plus PATCH and slashless aliases."""
    operations = protected_operations(secured_app)
    assert len(operations) >= 14
    resources = {url.split("/")[3] if url.startswith("/api/v1/") else url for _, url in operations}
    assert resources == {
        "dispatcher",
        "tasks",
        "accounts",
        "limits",
        "notifications",
        "events",
        "audit",
        "me",
        "/metrics",
    }


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param(b"Bearer wrong", id="wrong-token"),
        pytest.param(b"Basic " + TOKEN.encode(), id="wrong-scheme"),
        pytest.param(b"Bearer " + TOKEN.encode() + b"x", id="token-prefix-match"),
        pytest.param(b"Bearer s3cr\xe9t", id="non-ascii"),
    ],
)
async def test_every_route_without_valid_token_is_401(
    secured_app: FastAPI, secured_client: httpx.AsyncClient, authorization: bytes | None
) -> None:
    """With a token configured, every non-public route refuses a missing or wrong token."""
    headers: dict[bytes, bytes] = {} if authorization is None else {b"Authorization": authorization}
    for method, url in protected_operations(secured_app):
        response = await secured_client.request(method, url, headers=headers)
        assert response.status_code == 401, (method, url)
        assert response.json()["success"] is False
        assert response.json()["error"].startswith("未授权: ")
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_every_route_with_token_passes_the_guard(
    secured_app: FastAPI, secured_client: httpx.AsyncClient
) -> None:
    """The right token gets every route past authentication (to its own 2xx/4xx answer)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for method, url in protected_operations(secured_app):
        if url in STREAMING_PATHS:
            continue
        response = await secured_client.request(method, url, headers=headers)
        assert response.status_code != 401, (method, url)


async def test_token_allows_creating_and_reading_a_task(
    secured_client: httpx.AsyncClient,
) -> None:
    """A client with the token uses the API normally."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = await secured_client.post("/api/v1/tasks/", json=create_body(), headers=headers)
    assert created.status_code == 200
    task_id = created.json()["task_id"]
    assert (await secured_client.get(f"/api/v1/tasks/{task_id}", headers=headers)).is_success


@pytest.mark.parametrize("path", ["/api/v1/health", "/docs", "/openapi.json"])
async def test_public_paths_need_no_token(secured_client: httpx.AsyncClient, path: str) -> None:
    """Health and the API documentation stay reachable without a token."""
    assert (await secured_client.get(path)).status_code == 200


async def test_without_configured_token_no_header_is_needed(client: httpx.AsyncClient) -> None:
    """Without TASKDISPATCH_API_TOKEN the API is open."""
    assert (await client.get("/api/v1/tasks/")).status_code == 200


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    """No cors_origins setting, no CORS headers: browsers on other origins are refused."""
    response = await client.get("/api/v1/health", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_from_allowed_origin_is_answered_without_token(
    settings: Settings,
) -> None:
    """A configured origin gets preflight answers, even when a token protects the routes."""
    app = create_app(
        settings.model_copy(update={"cors_origins": ["https://ui.example"], "api_token": TOKEN})
    )
    async with serve(app) as client:
        response = await client.options(
            "/api/v1/tasks/",
            headers={
                "Origin": "https://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://ui.example"
