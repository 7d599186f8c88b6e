"""Specification of `current_round` in task reads: the round in progress and its live progress.

The round and its progress are arranged in Redis the way a worker writes them: the task
hash through the store's transaction, the progress key as the flusher's script leaves it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio.connection import AbstractConnection

from taskdispatch.domain import lifecycle
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store.progress import RoundProgress
from tests.support.api import CreateTask

WORKER = "celery@test-host"
RUN_ID = "run-of-the-test"
# 2026-01-08 10:30:00 +08:00 and 10:31:15.250 +08:00.
STARTED_MS = 1_767_839_400_000
PROGRESS_MS = 1_767_839_475_250


@pytest.fixture
async def task_id(create_task: CreateTask) -> str:
    info = await create_task()
    value: str = info["task_id"]
    return value


async def start_round(dispatcher: TaskDispatcher, task_id: str, *, run_id: str = RUN_ID) -> None:
    """The task's round `run_id` starts on WORKER, as the worker's start transaction does."""
    await dispatcher.store.mutate(
        task_id,
        lambda t: lifecycle.started(t, run_id=run_id, worker=WORKER, now_ms=STARTED_MS),
    )


async def report(
    dispatcher: TaskDispatcher, task_id: str, message: str, fraction: float | None, *, run_id: str
) -> None:
    """What the flusher stores for round `run_id`."""
    value = RoundProgress(run_id, message, fraction, PROGRESS_MS).to_json()
    await dispatcher.redis.set(dispatcher.keys.progress(task_id), value, px=30_000)


async def current_round(client: httpx.AsyncClient, task_id: str) -> Any:
    response = await client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()["current_round"]


async def test_read_running_task_with_progress_shows_it(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A running round shows its worker, start, progress text, fraction and last update."""
    await start_round(dispatcher, task_id)
    await report(dispatcher, task_id, "第 2 步，共 5 步", 0.4, run_id=RUN_ID)

    assert await current_round(client, task_id) == {
        "worker": WORKER,
        "started_at": "2026-01-08T10:30:00+08:00",
        "progress": "第 2 步，共 5 步",
        "fraction": 0.4,
        "progress_at": "2026-01-08T10:31:15.250+08:00",
        "stopping": False,
    }


async def test_read_running_task_without_progress_shows_the_round_only(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A round whose handler reported nothing shows where and since when it runs."""
    await start_round(dispatcher, task_id)

    shown = await current_round(client, task_id)

    assert (shown["worker"], shown["progress"], shown["fraction"], shown["progress_at"]) == (
        WORKER,
        None,
        None,
        None,
    )


async def test_read_progress_of_an_earlier_round_is_not_shown(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A stale write of the previous round is not taken for the new round's progress."""
    await start_round(dispatcher, task_id)
    await report(dispatcher, task_id, "previous round, almost done", 0.9, run_id="earlier-run")

    shown = await current_round(client, task_id)

    assert shown["worker"] == WORKER
    assert (shown["progress"], shown["fraction"], shown["progress_at"]) == (None, None, None)


async def test_read_task_not_running_has_no_current_round(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """No round in progress: `current_round` is null, whatever progress is left in Redis."""
    await report(dispatcher, task_id, "left over", 1.0, run_id=RUN_ID)

    assert await current_round(client, task_id) is None


async def test_list_running_task_shows_its_progress(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, create_task: CreateTask
) -> None:
    """The list shows each row's round in progress with its progress; idle rows show null."""
    running = (await create_task("account_running"))["task_id"]
    await create_task("account_idle")
    await start_round(dispatcher, running)
    await report(dispatcher, running, "uploading", 0.75, run_id=RUN_ID)

    page = (await client.get("/api/v1/tasks/")).json()["tasks"]

    shown = {t["account_id"]: t["current_round"] for t in page}
    assert shown["account_idle"] is None
    assert (shown["account_running"]["progress"], shown["account_running"]["fraction"]) == (
        "uploading",
        0.75,
    )


async def test_list_filtered_by_account_shows_its_progress(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """The account filter reads through the same path: the progress is there too."""
    await start_round(dispatcher, task_id)
    await report(dispatcher, task_id, "uploading", 0.75, run_id=RUN_ID)

    page = (await client.get("/api/v1/tasks/?account_id=account_1")).json()["tasks"]

    assert page[0]["current_round"]["progress"] == "uploading"


async def test_account_tasks_running_task_shows_its_progress(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """GET /accounts/{id}/tasks shows the same round in progress as the task read."""
    await start_round(dispatcher, task_id)
    await report(dispatcher, task_id, "uploading", 0.75, run_id=RUN_ID)

    tasks = (await client.get("/api/v1/accounts/account_1/tasks")).json()["tasks"]

    assert tasks[0]["current_round"] == await current_round(client, task_id)


async def test_list_page_of_running_tasks_with_progress_costs_two_round_trips(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    create_task: CreateTask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of 50 running tasks with progress: the page's ids, then one read of the tasks
    with their facts and progress; not a round trip per task."""
    for i in range(50):
        task_id = (await create_task(f"account_{i}"))["task_id"]
        await start_round(dispatcher, task_id, run_id=f"run-{i}")
        await report(dispatcher, task_id, f"step {i}", None, run_id=f"run-{i}")
    await client.get("/api/v1/tasks/?limit=50")  # the read script is loaded once
    sent: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent.append(1)
        await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    page = (await client.get("/api/v1/tasks/?limit=50")).json()["tasks"]

    assert sorted(t["current_round"]["progress"] for t in page) == sorted(
        f"step {i}" for i in range(50)
    )
    assert len(sent) == 2
