"""Scoped tokens: every route with each role, 403 naming the role needed below it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.settings import Settings
from tests.support.api import create_body, serve

TOKENS = {
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
    "admin": "admin-token-0123456789",
}
RANK = {"viewer": 1, "operator": 2, "admin": 3}

# The role each operation needs: the specification the app is checked against.
NEEDED = {
    ("GET", "/api/v1/dispatcher/status"): "viewer",
    ("POST", "/api/v1/dispatcher/start"): "admin",
    ("POST", "/api/v1/dispatcher/stop"): "admin",
    ("GET", "/api/v1/dispatcher/check"): "viewer",
    ("GET", "/api/v1/tasks/{task_id}/upcoming"): "viewer",
    ("POST", "/api/v1/tasks/preview"): "viewer",
    ("POST", "/api/v1/tasks/"): "admin",
    ("GET", "/api/v1/tasks/"): "viewer",
    ("GET", "/api/v1/tasks/{task_id}"): "viewer",
    ("PATCH", "/api/v1/tasks/{task_id}"): "admin",
    ("DELETE", "/api/v1/tasks/{task_id}"): "admin",
    ("POST", "/api/v1/tasks/{task_id}/pause"): "operator",
    ("POST", "/api/v1/tasks/{task_id}/resume"): "operator",
    ("POST", "/api/v1/tasks/{task_id}/reorder"): "operator",
    ("POST", "/api/v1/tasks/{task_id}/run"): "operator",
    ("POST", "/api/v1/tasks/{task_id}/cancel"): "operator",
    ("GET", "/api/v1/tasks/{task_id}/runs"): "viewer",
    ("GET", "/api/v1/accounts/{account_id}/tasks"): "viewer",
    ("PUT", "/api/v1/limits/{name}"): "admin",
    ("GET", "/api/v1/limits/"): "viewer",
    ("GET", "/api/v1/limits/{name}"): "viewer",
    ("DELETE", "/api/v1/limits/{name}"): "admin",
    ("PUT", "/api/v1/notifications/{name}"): "admin",
    ("GET", "/api/v1/notifications/"): "viewer",
    ("GET", "/api/v1/notifications/{name}"): "viewer",
    ("DELETE", "/api/v1/notifications/{name}"): "admin",
    ("POST", "/api/v1/notifications/{name}/test"): "admin",
    ("GET", "/metrics"): "viewer",
    ("POST", "/api/v1/tasks/bulk"): "operator",
    ("POST", "/api/v1/tasks/import"): "admin",
    ("GET", "/api/v1/tasks/export"): "viewer",
    ("GET", "/api/v1/audit"): "viewer",
    ("GET", "/api/v1/tasks/{task_id}/audit"): "viewer",
    ("GET", "/api/v1/me"): "viewer",
    ("GET", "/api/v1/tasks/days"): "viewer",
    ("GET", "/api/v1/events"): "viewer",
}
PUBLIC = {("GET", "/api/v1/health"), ("GET", "/api/v1/health/ready")}
# A notification whose receiver refuses connections (the discard port): nothing is sent.
NOTIFICATION = {"url": "http://127.0.0.1:9/hook", "events": ["task.error"]}


@pytest.fixture
def app(redis_url: str) -> FastAPI:
    tokens = {name: {"token": token, "role": name} for name, token in TOKENS.items()}
    settings = Settings(redis_url=redis_url, key_prefix="tdtest:", api_tokens=json.dumps(tokens))
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        yield client


def _operations(app: FastAPI) -> set[tuple[str, str]]:
    """Every operation of the app's OpenAPI schema, as (METHOD, path)."""
    return {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_roles_table_covers_every_operation(app: FastAPI) -> None:
    """Every operation of the schema has its role in the table (or is public)."""
    assert _operations(app) == set(NEEDED) | PUBLIC


def _request(method: str, path: str, ids: dict[str, str]) -> dict[str, Any]:
    url = path.format(**ids)
    body: Any = None
    if (method, path) == ("POST", "/api/v1/tasks/"):
        body = create_body("account_new")
    elif (method, path) == ("POST", "/api/v1/tasks/preview"):
        body = create_body("account_preview")
    elif method == "PATCH":
        body = {"interval": 120}
    elif (method, path) == ("POST", "/api/v1/tasks/{task_id}/reorder"):
        body = {"priority_offset": 60}
    elif path.startswith("/api/v1/notifications") and method == "PUT":
        body = NOTIFICATION
    elif method == "PUT":
        body = {"max_concurrent": 2}
    elif (method, path) == ("POST", "/api/v1/tasks/bulk"):
        body = {"action": "pause", "task_ids": [ids["task_id"]]}
    elif (method, path) == ("POST", "/api/v1/tasks/import"):
        line = json.dumps(create_body("account_imported"))
        return {"method": method, "url": url, "content": line, "ct": "application/x-ndjson"}
    return {"method": method, "url": url, "json": body}


@pytest.mark.parametrize("role", list(TOKENS))
@pytest.mark.parametrize(("method", "path"), sorted(NEEDED), ids=lambda x: str(x))
async def test_route_with_role_is_refused_only_below_the_role_it_needs(
    client: httpx.AsyncClient, role: str, method: str, path: str
) -> None:
    """A token below the needed role gets 403 naming that role; at or above, no 403."""
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    created = await client.post("/api/v1/tasks/", json=create_body("account_1"), headers=admin)
    task_id = created.json()["task_id"]
    await client.put("/api/v1/limits/l1", json={"max_concurrent": 1}, headers=admin)
    await client.put("/api/v1/notifications/l1", json=NOTIFICATION, headers=admin)
    if path.endswith("/resume"):
        await client.post(f"/api/v1/tasks/{task_id}/pause", headers=admin)
    ids = {"task_id": task_id, "account_id": "account_1", "name": "l1"}
    request = _request(method, path, ids)
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    if path == "/api/v1/events":
        # A stream never ends: an unparsable resume point answers 422 once auth has passed.
        request["url"] += "?last_event_id=not-an-id"
    if "ct" in request:
        headers["Content-Type"] = request.pop("ct")
    response = await client.request(**request, headers=headers)
    status = response.status_code
    body = response.json() if status == 403 else None
    if RANK[role] < RANK[NEEDED[(method, path)]]:
        assert status == 403
        assert body["error"] == (
            f"权限不足: 该操作需要 {NEEDED[(method, path)]} 角色，令牌 '{role}' 的角色是 {role}"
        )
    else:
        assert status not in (401, 403), (status, response.text)


@pytest.mark.parametrize(
    ("action", "needed"),
    [("pause", "operator"), ("run", "operator"), ("patch", "admin"), ("delete", "admin")],
)
async def test_bulk_action_needs_the_role_of_its_single_task_operation(
    client: httpx.AsyncClient, action: str, needed: str
) -> None:
    """An operator may bulk pause or run, not bulk patch or delete (admin only)."""
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    created = await client.post("/api/v1/tasks/", json=create_body("account_b"), headers=admin)
    body: dict[str, Any] = {"action": action, "task_ids": [created.json()["task_id"]]}
    if action == "patch":
        body["patch"] = {"interval": 120}
    operator = {"Authorization": f"Bearer {TOKENS['operator']}"}
    response = await client.post("/api/v1/tasks/bulk", json=body, headers=operator)
    assert response.status_code == (200 if needed == "operator" else 403), response.text


async def test_me_names_the_token_and_its_role(client: httpx.AsyncClient) -> None:
    """GET /me tells the dashboard who it is, so it offers only what the role may do."""
    headers = {"Authorization": f"Bearer {TOKENS['operator']}"}
    response = await client.get("/api/v1/me", headers=headers)
    assert response.json() == {"name": "operator", "role": "operator"}


async def test_unknown_token_is_401_even_with_roles(client: httpx.AsyncClient) -> None:
    """A token no entry has is refused as invalid."""
    response = await client.get("/api/v1/tasks/", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_without_tokens_a_remote_client_is_refused_naming_the_settings(
    redis_url: str,
) -> None:
    """No token configured: a request from another machine gets 403 saying how to fix it."""
    app = create_app(Settings(redis_url=redis_url, key_prefix="tdtest:"))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as remote,
    ):
        response = await remote.get("/api/v1/tasks/")
        assert response.status_code == 403
        assert "TASKDISPATCH_API_TOKEN" in response.json()["error"]
        assert (await remote.get("/api/v1/health")).status_code == 200


async def test_without_tokens_a_remote_client_is_served_when_allowed_explicitly(
    redis_url: str,
) -> None:
    """TASKDISPATCH_ALLOW_ANONYMOUS=true serves anonymous requests from anywhere."""
    app = create_app(Settings(redis_url=redis_url, key_prefix="tdtest:", allow_anonymous=True))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as remote,
    ):
        assert (await remote.get("/api/v1/tasks/")).status_code == 200
