"""Specification of POST /api/v1/tasks/{task_id}/cancel and the bulk `cancel` action.

The worker's side (the handler interrupted, the round recorded `cancelled`) is specified in
tests/unit/test_cancel.py and, with real processes, tests/e2e/test_cancel.py; here a round
"in progress" is arranged as a worker starts one.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskdispatch.domain import lifecycle
from taskdispatch.domain.clock import now_ms
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store.transaction import Change, Read, atransact
from tests.support.api import CreateTask


async def _running(dispatcher: TaskDispatcher, task_id: str) -> str:
    """Start a round of the task as a worker does; returns its run_id."""
    run_id = uuid.uuid4().hex

    def plan(read: Read) -> Change:
        assert read.task is not None
        return Change(lifecycle.started(read.task, run_id=run_id, worker="w1@h", now_ms=now_ms()))

    await atransact(dispatcher.redis, dispatcher.keys, task_id, plan)
    return run_id


async def test_cancel_of_a_running_round_answers_its_run_id(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """200 with the round asked to stop; the task stays running until the round ends."""
    task_id = (await create_task())["task_id"]
    run_id = await _running(dispatcher, task_id)
    response = await client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["run_id"], body["status"]) == (True, run_id, "running")
    assert (await dispatcher.get_task(task_id)).cancel_of == run_id


async def test_cancel_then_pause_answers_paused(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """With then=pause the task is paused in the same change; its round still stops."""
    task_id = (await create_task())["task_id"]
    await _running(dispatcher, task_id)
    response = await client.post(
        f"/api/v1/tasks/{task_id}/cancel", json={"then": "pause", "note": "验证码"}
    )
    assert response.json()["status"] == "paused"
    detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (detail["status"], detail["pause_note"]) == ("paused", "验证码")


async def test_cancel_of_a_task_without_a_round_answers_409(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """409 whose message says there is no round to stop."""
    task_id = (await create_task())["task_id"]
    response = await client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 409
    body = response.json()
    assert body["success"] is False
    assert "没有正在执行的轮次" in body["error"]


async def test_cancel_of_an_unknown_task_answers_404(client: httpx.AsyncClient) -> None:
    """An id that names no task: 404."""
    response = await client.post("/api/v1/tasks/no-such-task/cancel")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"), [({"then": "later"}, "then"), ({"then": "next", "extra": 1}, "extra")]
)
async def test_cancel_with_an_invalid_body_answers_422_naming_the_field(
    client: httpx.AsyncClient, create_task: CreateTask, body: dict[str, object], field: str
) -> None:
    """A `then` other than next/pause, or an unknown field, is refused by name."""
    task_id = (await create_task())["task_id"]
    response = await client.post(f"/api/v1/tasks/{task_id}/cancel", json=body)
    assert response.status_code == 422
    assert field in response.json()["error"]


async def test_cancel_is_audited_with_its_actor_and_note(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """The task's audit list starts with the cancel and its note."""
    task_id = (await create_task())["task_id"]
    await _running(dispatcher, task_id)
    await client.post(f"/api/v1/tasks/{task_id}/cancel", json={"note": "卡住了"})
    [entry, *_] = (await client.get(f"/api/v1/tasks/{task_id}/audit")).json()["entries"]
    assert (entry["action"], entry["note"]) == ("cancel", "卡住了")


async def test_bulk_cancel_stops_running_rounds_and_reports_idle_tasks(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """Bulk `cancel`: the running task is asked to stop, the idle one fails with its code."""
    busy = (await create_task("acct-busy"))["task_id"]
    idle = (await create_task("acct-idle"))["task_id"]
    run_id = await _running(dispatcher, busy)
    response = await client.post(
        "/api/v1/tasks/bulk", json={"action": "cancel", "task_ids": [busy, idle], "then": "pause"}
    )
    assert response.status_code == 200, response.text
    results = {r["task_id"]: r for r in response.json()["results"]}
    assert results[busy]["ok"] is True
    assert results[idle]["ok"] is False
    assert results[idle]["code"] == "cancel_not_running"
    task = await dispatcher.get_task(busy)
    assert (task.cancel_of, task.status.value) == (run_id, "paused")
