"""Specification of a task's own `queue` through the API: create, PATCH, the `queue`
filter, bulk patch, export and import, the waiting reason, and the errors."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import CreateTask, create_body

TASKS = "/api/v1/tasks/"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _patch(client: httpx.AsyncClient, task_id: str, body: dict[str, Any]) -> Any:
    response = await client.patch(f"{TASKS}{task_id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["task_info"]


async def _listed(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get(TASKS, params=params)
    assert response.status_code == 200, response.text
    return [t["account_id"] for t in response.json()["tasks"]]


async def _listed_ids(client: httpx.AsyncClient) -> list[str]:
    return [t["task_id"] for t in (await client.get(TASKS)).json()["tasks"]]


async def test_create_with_queue_shows_it_in_task_info(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """The queue given at creation is the task's own; a task created without one has null."""
    pinned = await create_task("a1", queue="dev-a")
    assert pinned["queue"] == "dev-a"
    assert (await create_task("a2"))["queue"] is None
    assert (await client.get(f"{TASKS}{pinned['task_id']}")).json()["queue"] == "dev-a"


async def test_patch_queue_moves_the_task_and_null_moves_it_back(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """A PATCH sets the task's queue and `queue: null` removes it; the indexes follow."""
    task_id = (await create_task("a1"))["task_id"]
    assert (await _patch(client, task_id, {"queue": "dev-b"}))["queue"] == "dev-b"
    assert await _listed(client, queue="dev-b") == ["a1"]
    assert (await _patch(client, task_id, {"queue": None}))["queue"] is None
    assert await _listed(client, queue="dev-b") == []
    assert await check_consistency(dispatcher.redis, dispatcher.keys) == []


async def test_patch_without_queue_keeps_it(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A PATCH that does not name `queue` leaves the task on its queue."""
    task_id = (await create_task("a1", queue="dev-a"))["task_id"]
    assert (await _patch(client, task_id, {"account_name": "新名字"}))["queue"] == "dev-a"


async def test_list_filter_queue_selects_tasks_of_that_queue_with_other_filters(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """`?queue=` lists the tasks whose own queue it is, alone or with a status or tag;
    tasks without a queue of their own are not listed under the default queue's name."""
    await create_task("a1", queue="dev-a", tags=["team:x"])
    await create_task("a2", queue="dev-b", tags=["team:x"])
    paused = await create_task("a3", queue="dev-a")
    await create_task("a4")
    await client.post(f"{TASKS}{paused['task_id']}/pause")
    assert await _listed(client, queue="dev-a") == ["a1", "a3"]
    assert await _listed(client, queue="dev-a", status="paused") == ["a3"]
    assert await _listed(client, queue="dev-a", tag="team:x") == ["a1"]
    assert await _listed(client, queue="dev-a", sort="next") == ["a1", "a3"]
    assert await _listed(client, queue="celery") == []
    total = (await client.get(TASKS, params={"queue": "dev-b"})).json()["total"]
    assert total == 1


async def test_bulk_patch_moves_the_selected_tasks_to_a_queue(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """A bulk `patch` with `queue` moves every selected task; a select by queue finds them."""
    for account in ("a1", "a2"):
        await create_task(account, tags=["device:mac-01"])
    await create_task("a3")
    response = await client.post(
        f"{TASKS}bulk",
        json={"action": "patch", "select": {"tag": "device:mac-01"}, "patch": {"queue": "mac-01"}},
    )
    assert response.json()["changed"] == 2, response.text
    assert await _listed(client, queue="mac-01") == ["a1", "a2"]
    response = await client.post(
        f"{TASKS}bulk",
        json={"action": "patch", "select": {"queue": "mac-01"}, "patch": {"queue": None}},
    )
    assert response.json()["changed"] == 2, response.text
    assert await _listed(client, queue="mac-01") == []
    assert await check_consistency(dispatcher.redis, dispatcher.keys) == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_import_round_trip_keeps_the_queue(
    client: httpx.AsyncClient, create_task: CreateTask, fmt: str
) -> None:
    """An export carries each task's own queue and an import into an empty store restores
    it; a task without one stays without one."""
    await create_task("a1", queue="dev-a")
    await create_task("a2")
    exported = (await client.get(f"{TASKS}export", params={"format": fmt})).text
    for task_id in await _listed_ids(client):
        await client.delete(f"{TASKS}{task_id}")
    content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    result = await client.post(
        f"{TASKS}import", content=exported, headers={"Content-Type": content_type}
    )
    assert (result.json()["created"], result.json()["errors"]) == (2, [])
    tasks = (await client.get(TASKS)).json()["tasks"]
    assert [(t["account_id"], t["queue"]) for t in tasks] == [("a1", "dev-a"), ("a2", None)]


async def test_export_filter_queue_exports_only_that_queue(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """The export takes the same `queue` filter as the listing."""
    await create_task("a1", queue="dev-a")
    await create_task("a2")
    exported = (await client.get(f"{TASKS}export", params={"queue": "dev-a"})).text
    rows = [json.loads(line) for line in exported.splitlines()]
    assert [(r["xhs_account_id"], r["queue"]) for r in rows] == [("a1", "dev-a")]


async def test_import_update_moves_an_existing_task_to_the_rows_queue(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Importing a row for an account that has a task, with on_conflict=update, moves it."""
    await create_task("a1")
    row = json.dumps({**create_body("a1"), "queue": "dev-c"}) + "\n"
    result = await client.post(
        f"{TASKS}import",
        content=row,
        headers={"Content-Type": "application/x-ndjson"},
        params={"on_conflict": "update"},
    )
    assert result.json()["updated"] == 1, result.text
    assert await _listed(client, queue="dev-c") == ["a1"]


@pytest.mark.parametrize(
    ("queue", "fragment"),
    [
        pytest.param("dev a", "不是有效的 Celery 队列名", id="space"),
        pytest.param("a,b", "不是有效的 Celery 队列名", id="comma"),
        pytest.param("q" * 65, "不是有效的 Celery 队列名", id="too-long"),
        pytest.param("w1@host.dq2", "Celery 的内部队列", id="worker-direct"),
    ],
)
async def test_create_and_patch_bad_queue_are_refused_naming_queue(
    client: httpx.AsyncClient, create_task: CreateTask, queue: str, fragment: str
) -> None:
    """A bad queue answers 422 with an error naming `queue`, on create and on PATCH alike,
    and changes nothing."""
    created = await client.post(TASKS, json=create_body("a1", queue=queue))
    assert created.status_code == 422, created.text
    assert created.json()["error"].startswith("queue") and fragment in created.json()["error"]
    task_id = (await create_task("a2", queue="dev-a"))["task_id"]
    patched = await client.patch(f"{TASKS}{task_id}", json={"queue": queue})
    assert patched.status_code == 422, patched.text
    assert patched.json()["error"] == created.json()["error"]
    assert (await client.get(f"{TASKS}{task_id}")).json()["queue"] == "dev-a"


async def test_list_filter_bad_queue_is_refused_naming_queue(client: httpx.AsyncClient) -> None:
    """The filter refuses what the field refuses, with the same message."""
    response = await client.get(TASKS, params={"queue": "a b"})
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("queue")


async def test_create_queue_of_wrong_type_is_refused_naming_queue(
    client: httpx.AsyncClient,
) -> None:
    """A queue that is not text is a 422 on `queue`."""
    response = await client.post(TASKS, json=create_body("a1", queue=42))
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("queue")


async def test_waiting_reason_names_the_tasks_own_queue(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """With a live worker on the default queue only, a task on dev-a waits with
    no_worker_for_queue naming dev-a, and a worker on dev-a ends that."""
    task_id = (await create_task("a1", queue="dev-a"))["task_id"]
    keys = dispatcher.keys
    await dispatcher.redis.zadd(keys.workers(), {"w1@host": now_ms()})
    await dispatcher.redis.hset(keys.worker_queues(), "w1@host", "celery")
    reason = (await client.get(f"{TASKS}{task_id}")).json()["waiting_reason"]
    assert reason == {"code": "no_worker_for_queue", "queue": "dev-a"}
    await dispatcher.redis.hset(keys.worker_queues(), "w1@host", "celery,dev-a")
    assert (await client.get(f"{TASKS}{task_id}")).json()["waiting_reason"] is None
