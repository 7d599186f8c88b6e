"""POST /api/v1/tasks/bulk: one action on many tasks, each atomically, safe to repeat."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio

from taskdispatch.domain.clock import now_ms
from taskdispatch.service.dispatcher import BULK_MAX, TaskDispatcher
from taskdispatch.store.keys import Keys
from tests.support.api import CreateTask
from tests.support.fleet import seed_fleet

KEYS = Keys("tdtest:")
BULK = "/api/v1/tasks/bulk"


@pytest.fixture
async def raw(redis_url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(redis_url, decode_responses=True)


async def _statuses(client: httpx.AsyncClient, ids: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for task_id in ids:
        found[(await client.get(f"/api/v1/tasks/{task_id}")).json()["status"]] += 1
    return found


async def test_bulk_pause_by_tag_changes_exactly_the_tagged_tasks_each_audited(
    client: httpx.AsyncClient, redis_url: str, raw: redis.asyncio.Redis
) -> None:
    """500 of 5,000 tasks carry the tag: those 500 are paused, each with its audit entry,
    and no other task changes."""
    ids = seed_fleet(
        redis_url,
        KEYS,
        5000,
        now_ms=now_ms(),
        tags_of=lambda i: ("device:mac-01",) if i % 10 == 3 else ("device:mac-02",),
    )
    tagged = [task_id for i, task_id in enumerate(ids) if i % 10 == 3]
    response = await client.post(
        BULK,
        json={
            "action": "pause",
            "select": {"tag": "device:mac-01"},
            "note": "设备维护",
            "request_id": "maint-mac-01",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["selected"], body["changed"], body["failed"]) == (500, 500, 0)
    assert [r["task_id"] for r in body["results"]] == tagged
    assert body["message"] == "批量操作完成：500 个任务成功，0 个失败"
    paused = await client.get("/api/v1/tasks/", params={"status": "paused", "limit": 1000})
    assert sorted(t["task_id"] for t in paused.json()["tasks"]) == sorted(tagged)
    assert paused.json()["total"] == 500
    for task_id in tagged[:50]:
        entries = (await client.get(f"/api/v1/tasks/{task_id}/audit")).json()["entries"]
        assert [(e["action"], e["note"], e["request"]) for e in entries] == [
            ("pause", "设备维护", "maint-mac-01")
        ]
        assert entries[0]["changes"]["status"] == {"before": "pending", "after": "paused"}
    trail = (await client.get("/api/v1/audit", params={"action": "pause", "limit": 1000})).json()
    assert len(trail["entries"]) == 500


async def test_bulk_repeated_with_the_same_request_id_changes_nothing_twice(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A reorder repeated (a retry after a lost reply) moves each task once, not twice."""
    infos = [await create_task(f"account_{i}") for i in range(3)]
    body = {
        "action": "reorder",
        "task_ids": [i["task_id"] for i in infos],
        "priority_offset": 600,
        "request_id": "retry-me",
    }
    first = (await client.post(BULK, json=body)).json()
    again = (await client.post(BULK, json=body)).json()
    assert [r["repeated"] for r in first["results"]] == [False] * 3
    assert [r["repeated"] for r in again["results"]] == [True] * 3
    for info in infos:
        now = (await client.get(f"/api/v1/tasks/{info['task_id']}")).json()
        moved = _seconds(now["next_execution_time"]) - _seconds(info["next_execution_time"])
        assert moved == 600
        audit = (await client.get(f"/api/v1/tasks/{info['task_id']}/audit")).json()
        assert [e["action"] for e in audit["entries"]] == ["reorder", "create"]


async def test_bulk_per_task_conflict_does_not_stop_the_others(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """One task already paused answers its own 409 reason; the others are paused."""
    a, b = await create_task("account_a"), await create_task("account_b")
    await client.post(f"/api/v1/tasks/{a['task_id']}/pause")
    response = await client.post(
        BULK, json={"action": "pause", "task_ids": [a["task_id"], b["task_id"]]}
    )
    results = response.json()["results"]
    assert (results[0]["ok"], results[0]["code"]) == (False, "pause_conflict")
    assert results[0]["error"] == "任务状态为 paused，只有 pending 或 running 的任务可以暂停"
    assert (results[1]["ok"], results[1]["status"]) == (True, "paused")


async def test_bulk_unknown_task_id_is_reported_not_found(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """An id that names no task is one result with task_not_found."""
    known = await create_task()
    response = await client.post(
        BULK, json={"action": "run", "task_ids": ["no-such-task", known["task_id"]]}
    )
    results = response.json()["results"]
    assert [(r["task_id"], r["ok"], r["code"]) for r in results] == [
        ("no-such-task", False, "task_not_found"),
        (known["task_id"], True, None),
    ]


async def test_bulk_dry_run_answers_what_would_change_and_writes_nothing(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A dry run reports each task's would-be status; the tasks and the trail are unchanged."""
    infos = [await create_task(f"account_{i}") for i in range(2)]
    ids = [i["task_id"] for i in infos]
    response = await client.post(BULK, json={"action": "pause", "task_ids": ids, "dry_run": True})
    body = response.json()
    assert body["dry_run"] is True
    assert [r["status"] for r in body["results"]] == ["paused", "paused"]
    assert await _statuses(client, ids) == Counter({"pending": 2})
    trail = (await client.get("/api/v1/audit")).json()["entries"]
    assert {e["action"] for e in trail} == {"create"}


async def test_bulk_patch_applies_the_patch_body_to_each_task(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """patch takes the PATCH body: each selected task gets the new interval and tags."""
    infos = [await create_task(f"account_{i}", tags=["team:a"]) for i in range(2)]
    response = await client.post(
        BULK,
        json={
            "action": "patch",
            "select": {"tag": "team:a"},
            "patch": {"interval": 7200, "tags": ["team:b"]},
        },
    )
    assert response.json()["changed"] == 2
    for info in infos:
        task = (await client.get(f"/api/v1/tasks/{info['task_id']}")).json()
        assert (task["interval"], task["tags"]) == (7200, ["team:b"])


async def test_bulk_delete_removes_the_tasks_and_their_accounts(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """delete: gone, and the account can have a new task."""
    info = await create_task("account_gone")
    response = await client.post(BULK, json={"action": "delete", "task_ids": [info["task_id"]]})
    assert response.json()["results"][0]["status"] == "deleted"
    assert (await client.get(f"/api/v1/tasks/{info['task_id']}")).status_code == 404
    await create_task("account_gone")


async def test_bulk_resume_after_bulk_pause_restores_pending(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """pause then resume by the same selection: every task pending again."""
    ids = [(await create_task(f"account_{i}", tags=["t"]))["task_id"] for i in range(3)]
    await client.post(BULK, json={"action": "pause", "select": {"tag": "t"}})
    await client.post(BULK, json={"action": "resume", "select": {"tag": "t"}})
    assert await _statuses(client, ids) == Counter({"pending": 3})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"action": "pause"}, "select", id="no-selection"),
        pytest.param(
            {"action": "pause", "select": {}, "task_ids": ["x"]}, "select", id="both-selections"
        ),
        pytest.param({"action": "reorder", "task_ids": ["x"]}, "priority_offset", id="no-offset"),
        pytest.param({"action": "patch", "task_ids": ["x"]}, "patch", id="no-patch"),
        pytest.param(
            {"action": "patch", "task_ids": ["x"], "patch": {"interval": 0}},
            "interval",
            id="bad-patch-value",
        ),
        pytest.param({"action": "pause", "select": {"status": "sleepy"}}, "status", id="status"),
        pytest.param(
            {"action": "pause", "task_ids": ["x"], "request_id": "bad id"}, "request_id", id="rid"
        ),
        pytest.param({"action": "explode", "task_ids": ["x"]}, "action", id="unknown-action"),
    ],
)
async def test_bulk_bad_request_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """A request that cannot be carried out is refused whole, with the field named."""
    response = await client.post(BULK, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_bulk_selection_over_the_cap_is_422(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """More than BULK_MAX ids: refused before anything changes."""
    ids = [f"id-{i}" for i in range(BULK_MAX + 1)]
    response = await client.post(BULK, json={"action": "pause", "task_ids": ids})
    assert response.status_code == 422
    assert str(BULK_MAX) in response.json()["error"]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
