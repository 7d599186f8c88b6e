"""Specification of /api/v1/dispatcher: status, start and stop."""

from __future__ import annotations

import httpx

from taskdispatch.domain.models import TaskStatus
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import CreateTask

MINUTE_MS = 60_000


async def mark_running(
    dispatcher: TaskDispatcher, task_id: str, *, started_ms: int, worker: str
) -> None:
    """Put a round in progress the way a worker does: running status plus the running index."""
    await dispatcher.store.mutate(
        task_id,
        lambda t: t.evolve(status=TaskStatus.RUNNING, started_ms=started_ms, worker=worker),
    )
    await dispatcher.redis.zadd(dispatcher.keys.running(), {task_id: started_ms + MINUTE_MS})


async def test_status_empty_store_has_document_fields(client: httpx.AsyncClient) -> None:
    """With no tasks every count is 0 and nothing runs (section 3.2.1 fields plus extras)."""
    response = await client.get("/api/v1/dispatcher/status")
    assert response.status_code == 200
    assert response.json() == {
        "is_running": False,
        "total_tasks": 0,
        "pending_tasks": 0,
        "running_tasks": 0,
        "paused_tasks": 0,
        "completed_tasks": 0,
        "error_tasks": 0,
        "current_running_task": None,
        "enabled": True,
        "beats_alive": 0,
        "workers_alive": 0,
        "running_rounds": [],
        "due_backlog": 0,
        "unconsumed_queues": {},
        "scheduling_lag_s": 0.0,
        "limits": [],
    }


async def test_status_counts_tasks_per_status(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Counts follow the tasks' statuses; total_tasks is their sum."""
    await create_task("a1")
    await create_task("a2")
    paused = await create_task("a3")
    await client.post(f"/api/v1/tasks/{paused['task_id']}/pause")
    body = (await client.get("/api/v1/dispatcher/status")).json()
    assert (body["total_tasks"], body["pending_tasks"], body["paused_tasks"]) == (3, 2, 1)


async def test_status_lists_running_rounds_oldest_first(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """Every round in progress is listed; current_running_task is the earliest started."""
    later = await create_task("a1")
    earlier = await create_task("a2", timezone="UTC")
    now = dispatcher.clock()
    await mark_running(dispatcher, later["task_id"], started_ms=now, worker="w1")
    await mark_running(dispatcher, earlier["task_id"], started_ms=now - MINUTE_MS, worker="w2")
    body = (await client.get("/api/v1/dispatcher/status")).json()
    assert body["running_tasks"] == 2
    assert [r["task_id"] for r in body["running_rounds"]] == [
        earlier["task_id"],
        later["task_id"],
    ]
    current = body["current_running_task"]
    assert current == body["running_rounds"][0]
    assert (current["account_id"], current["worker"]) == ("a2", "w2")
    assert current["started_at"].endswith("+00:00")  # in the task's own time zone


async def test_stop_clears_enabled_with_document_message(client: httpx.AsyncClient) -> None:
    """POST /stop answers 调度器已停止 and the status shows enabled false."""
    response = await client.post("/api/v1/dispatcher/stop")
    assert response.json() == {"success": True, "message": "调度器已停止"}
    assert (await client.get("/api/v1/dispatcher/status")).json()["enabled"] is False


async def test_start_sets_enabled_with_document_message(client: httpx.AsyncClient) -> None:
    """POST /start after a stop answers 调度器已启动 and the status shows enabled true."""
    await client.post("/api/v1/dispatcher/stop")
    response = await client.post("/api/v1/dispatcher/start")
    assert response.json() == {"success": True, "message": "调度器已启动"}
    assert (await client.get("/api/v1/dispatcher/status")).json()["enabled"] is True


async def test_status_is_not_running_without_a_beat(client: httpx.AsyncClient) -> None:
    """Started but with no beat heartbeat, is_running is false: nothing would dispatch."""
    await client.post("/api/v1/dispatcher/start")
    body = (await client.get("/api/v1/dispatcher/status")).json()
    assert (body["enabled"], body["beats_alive"], body["is_running"]) == (True, 0, False)


async def test_status_is_running_with_a_live_beat(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """Enabled and with a fresh beat heartbeat, is_running is true."""
    await dispatcher.redis.zadd(dispatcher.keys.beats(), {"beat-1": dispatcher.clock()})
    body = (await client.get("/api/v1/dispatcher/status")).json()
    assert (body["beats_alive"], body["is_running"]) == (1, True)


async def test_status_is_not_running_when_stopped_with_a_live_beat(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher
) -> None:
    """A live beat does not make a stopped dispatcher running."""
    await dispatcher.redis.zadd(dispatcher.keys.beats(), {"beat-1": dispatcher.clock()})
    await client.post("/api/v1/dispatcher/stop")
    assert (await client.get("/api/v1/dispatcher/status")).json()["is_running"] is False
