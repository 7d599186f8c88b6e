"""Specification of /api/v1/accounts and of the one-task-per-account rule under races."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.exceptions import AccountTaskExistsError
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from tests.support.api import CreateTask, create_body

RACERS = 50


async def test_account_tasks_returns_document_shape(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """GET /accounts/{id}/tasks answers account_id, total and TaskInfo items (3.4.1)."""
    created = await create_task("account_1")
    await create_task("account_2")
    response = await client.get("/api/v1/accounts/account_1/tasks")
    assert response.status_code == 200
    assert response.json() == {"account_id": "account_1", "total": 1, "tasks": [created]}


async def test_account_tasks_unknown_account_is_empty(client: httpx.AsyncClient) -> None:
    """An account without a task has an empty list, not a 404."""
    response = await client.get("/api/v1/accounts/nobody/tasks")
    assert response.json() == {"account_id": "nobody", "total": 0, "tasks": []}


async def assert_exactly_one_task_stored(client: httpx.AsyncClient, account_id: str) -> None:
    listed = (await client.get("/api/v1/tasks/")).json()
    by_account = (await client.get(f"/api/v1/accounts/{account_id}/tasks")).json()
    assert (listed["total"], len(listed["tasks"])) == (1, 1)
    assert by_account["total"] == 1
    assert by_account["tasks"] == listed["tasks"]


async def test_concurrent_creates_for_one_account_store_exactly_one(
    client: httpx.AsyncClient,
) -> None:
    """50 simultaneous creates for one account: one 200, 49 x 400, one stored task."""
    responses = await asyncio.gather(
        *(client.post("/api/v1/tasks/", json=create_body("account_1")) for _ in range(RACERS))
    )
    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code == 400]
    assert (len(winners), len(losers)) == (1, RACERS - 1)
    winner_id = winners[0].json()["task_id"]
    expected = f"账户ID 'account_1' 已存在任务 '{winner_id}'，同一账户不能创建多个任务"
    assert {r.json()["error"] for r in losers} == {expected}
    await assert_exactly_one_task_stored(client, "account_1")


def create_from_own_connection(settings: Settings, barrier: threading.Barrier) -> str:
    """In a thread of its own: connect, wait for every racer, then create; the outcome."""

    async def race() -> str:
        async with TaskDispatcher(settings, task_types={"xhs_type"}) as own:
            await own.redis.ping()
            barrier.wait()
            try:
                return (
                    await own.create_task(TaskSpec.model_validate(create_body("account_1")))
                ).task_id
            except AccountTaskExistsError:
                return "refused"

    return asyncio.run(race())


async def test_creates_from_separate_connections_store_exactly_one(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """50 threads, each with its own dispatcher and connection, race: exactly one wins."""
    barrier = threading.Barrier(RACERS)

    def run_all() -> list[str]:
        with ThreadPoolExecutor(RACERS) as pool:
            runs = [
                pool.submit(create_from_own_connection, settings, barrier) for _ in range(RACERS)
            ]
            return [run.result() for run in runs]

    outcomes = await asyncio.to_thread(run_all)
    winners = [outcome for outcome in outcomes if outcome != "refused"]
    assert len(winners) == 1
    await assert_exactly_one_task_stored(client, "account_1")
    assert (await client.get(f"/api/v1/tasks/{winners[0]}")).status_code == 200
