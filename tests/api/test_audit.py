"""The audit trail: every change says who, when, what (before -> after) and why."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.settings import Settings
from taskdispatch.store.audit import LINK_FIELD
from taskdispatch.store.keys import Keys
from tests.support.api import CreateTask, create_body, serve

KEYS = Keys("tdtest:")
ALICE = "alice-token-0123456789"
OPS = "ops-bot-token-0123456789"


@pytest.fixture
async def named(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose two tokens are named alice (admin) and ops-bot (operator)."""
    tokens = {
        "alice": {"token": ALICE, "role": "admin"},
        "ops-bot": {"token": OPS, "role": "operator"},
    }
    settings = Settings(
        redis_url=redis_url,
        key_prefix="tdtest:",
        api_tokens=json.dumps(tokens),
        audit_kept_per_task=5,
    )
    app: FastAPI = create_app(settings)
    async with serve(app) as client:
        yield client


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _trail(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit", params=params, headers=_as(ALICE))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_audit_every_kind_of_change_names_its_actor_and_action(
    named: httpx.AsyncClient,
) -> None:
    """create, patch, pause, resume, reorder, run, delete, dispatcher and limits: one entry
    each, newest first, with the name of the token that made it."""
    created = await named.post("/api/v1/tasks/", json=create_body("a"), headers=_as(ALICE))
    task_id = created.json()["task_id"]
    steps = [
        ("patch", ALICE, "PATCH", f"/api/v1/tasks/{task_id}", {"interval": 7200}),
        ("pause", OPS, "POST", f"/api/v1/tasks/{task_id}/pause", {"note": "申诉"}),
        ("resume", OPS, "POST", f"/api/v1/tasks/{task_id}/resume", None),
        ("reorder", OPS, "POST", f"/api/v1/tasks/{task_id}/reorder", {"priority_offset": 60}),
        ("run", OPS, "POST", f"/api/v1/tasks/{task_id}/run", None),
        ("limit.put", ALICE, "PUT", "/api/v1/limits/l1", {"max_concurrent": 2}),
        ("limit.delete", ALICE, "DELETE", "/api/v1/limits/l1", None),
        ("dispatcher.stop", ALICE, "POST", "/api/v1/dispatcher/stop", None),
        ("dispatcher.start", ALICE, "POST", "/api/v1/dispatcher/start", None),
        ("delete", ALICE, "DELETE", f"/api/v1/tasks/{task_id}", None),
    ]
    for _, token, method, url, body in steps:
        response = await named.request(method, url, json=body, headers=_as(token))
        assert response.status_code == 200, response.text
    trail = await _trail(named)
    expected = [("create", "alice")] + [
        (action, "alice" if token == ALICE else "ops-bot") for action, token, *_ in steps
    ]
    assert [(e["action"], e["actor"]) for e in reversed(trail)] == expected


async def test_audit_patch_records_each_changed_field_before_and_after(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Only the fields that changed, in the API's terms."""
    info = await create_task("a", interval=3600, tags=["x"])
    await client.patch(f"/api/v1/tasks/{info['task_id']}", json={"interval": 7200, "tags": ["y"]})
    [entry, _] = (await client.get(f"/api/v1/tasks/{info['task_id']}/audit")).json()["entries"]
    changes = entry["changes"]
    assert changes["interval"] == {"before": 3600, "after": 7200}
    assert changes["tags"] == {"before": ["x"], "after": ["y"]}
    assert set(changes) <= {"interval", "tags", "next_execution_time"}
    assert entry["actor"] == "anonymous"


async def test_audit_pause_keeps_its_note(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """The pause's note is the entry's note (why it was paused)."""
    info = await create_task("a")
    await client.post(f"/api/v1/tasks/{info['task_id']}/pause", json={"note": "账号申诉中"})
    entry = (await client.get(f"/api/v1/tasks/{info['task_id']}/audit")).json()["entries"][0]
    assert (entry["action"], entry["note"]) == ("pause", "账号申诉中")
    assert entry["changes"]["status"] == {"before": "pending", "after": "paused"}


async def test_audit_refused_change_records_nothing(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A 409 changed nothing, so the trail has nothing of it."""
    info = await create_task("a")
    assert (await client.post(f"/api/v1/tasks/{info['task_id']}/resume")).status_code == 409
    trail = (await client.get("/api/v1/audit")).json()["entries"]
    assert [e["action"] for e in trail] == ["create"]


async def test_audit_per_task_list_is_capped(named: httpx.AsyncClient) -> None:
    """audit_kept_per_task=5: a task's own list keeps its newest 5 entries."""
    created = await named.post("/api/v1/tasks/", json=create_body("a"), headers=_as(ALICE))
    task_id = created.json()["task_id"]
    for offset in range(1, 8):
        await named.post(
            f"/api/v1/tasks/{task_id}/reorder",
            json={"priority_offset": offset},
            headers=_as(OPS),
        )
    response = await named.get(f"/api/v1/tasks/{task_id}/audit", headers=_as(OPS))
    assert [e["action"] for e in response.json()["entries"]] == ["reorder"] * 5


async def test_audit_filters_by_actor_and_action(named: httpx.AsyncClient) -> None:
    """actor and action select entries; all given must hold."""
    for account in ("a", "b"):
        await named.post("/api/v1/tasks/", json=create_body(account), headers=_as(ALICE))
    tasks = (await named.get("/api/v1/tasks/", headers=_as(OPS))).json()["tasks"]
    await named.post(f"/api/v1/tasks/{tasks[0]['task_id']}/pause", headers=_as(OPS))
    assert [e["action"] for e in await _trail(named, actor="ops-bot")] == ["pause"]
    assert len(await _trail(named, actor="alice", action="create")) == 2
    assert await _trail(named, actor="alice", action="pause") == []


async def test_audit_pages_newest_first_with_a_cursor(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """limit and next_before walk the whole trail once, newest first, with no repeat."""
    for i in range(7):
        await create_task(f"acct-{i}")
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"before": before} if before else {})}
        page = (await client.get("/api/v1/audit", params=params)).json()
        seen += [e["account_id"] for e in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [f"acct-{i}" for i in reversed(range(7))]


async def test_audit_time_filter_excludes_entries_before_since(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """since is inclusive and in the server's zone; an instant after every entry finds none."""
    await create_task("a")
    entries = (await client.get("/api/v1/audit")).json()["entries"]
    assert (await client.get("/api/v1/audit", params={"since": "2000-01-01T00:00:00"})).json()[
        "entries"
    ] == entries
    later = (await client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00"})).json()
    assert later["entries"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"before": "yesterday"}, "before", id="cursor"),
        pytest.param({"since": "not-a-time"}, "since", id="since"),
        pytest.param({"limit": 0}, "limit", id="limit"),
    ],
)
async def test_audit_bad_query_is_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    """Unusable parameters are refused with their name."""
    response = await client.get("/api/v1/audit", params=params)
    assert response.status_code == 422
    assert field in response.text


async def test_audit_of_an_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    """A task's own audit needs the task; the trail keeps deleted tasks' entries."""
    assert (await client.get("/api/v1/tasks/nope/audit")).status_code == 404


async def test_audit_deleted_task_leaves_its_deletion_in_the_trail(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """After a delete, the trail still answers who deleted which account."""
    info = await create_task("gone")
    await client.delete(f"/api/v1/tasks/{info['task_id']}")
    entries = (await client.get("/api/v1/audit", params={"task_id": info["task_id"]})).json()
    assert [(e["action"], e["account_id"]) for e in entries["entries"]] == [
        ("delete", "gone"),
        ("create", "gone"),
    ]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """The test's Redis, to look at how the trail is stored."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def _reorders(client: httpx.AsyncClient, task_id: str, count: int) -> None:
    for offset in range(1, count + 1):
        url = f"/api/v1/tasks/{task_id}/reorder"
        response = await client.post(url, json={"priority_offset": offset})
        assert response.status_code == 200, response.text


async def test_audit_entry_is_stored_once_in_the_trail(
    client: httpx.AsyncClient, create_task: CreateTask, store: redis.asyncio.Redis
) -> None:
    """The trail holds each entry; the task's hash only names its newest; no other copy."""
    task_id = (await create_task("a"))["task_id"]
    await _reorders(client, task_id, 1)
    trail = await store.xrange(KEYS.audit())
    assert [fields["action"] for _, fields in trail] == ["create", "reorder"]
    assert await store.hget(KEYS.task(task_id), LINK_FIELD) == trail[-1][0]
    assert [key async for key in store.scan_iter(match=f"{KEYS.audit()}*")] == [KEYS.audit()]


async def test_audit_task_page_names_its_entries_by_their_trail_ids(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A task's own page and the trail filtered by the task list the same entries, even
    with another task's changes between them."""
    a = (await create_task("a"))["task_id"]
    b = (await create_task("b"))["task_id"]
    for task_id in (a, b, a):
        await _reorders(client, task_id, 2)
    own = (await client.get(f"/api/v1/tasks/{a}/audit")).json()["entries"]
    trail = (await client.get("/api/v1/audit", params={"task_id": a})).json()["entries"]
    assert [e["id"] for e in own] == [e["id"] for e in trail]
    assert [e["action"] for e in own] == ["reorder"] * 4 + ["create"]


async def test_audit_task_page_drops_entries_the_trail_trimmed(
    client: httpx.AsyncClient, create_task: CreateTask, store: redis.asyncio.Redis
) -> None:
    """Entries the capped trail no longer holds are gone from the task's page too."""
    task_id = (await create_task("a"))["task_id"]
    await _reorders(client, task_id, 5)
    await store.xtrim(KEYS.audit(), maxlen=3, approximate=False)
    kept = [entry_id for entry_id, _ in reversed(await store.xrange(KEYS.audit()))]
    own = (await client.get(f"/api/v1/tasks/{task_id}/audit")).json()["entries"]
    assert [e["id"] for e in own] == kept
    assert len(kept) == 3
