"""Many clients change the same tasks while rounds finish: the store stays consistent."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from taskdispatch.domain.bodies import TaskChange
from taskdispatch.domain.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    TaskConflictError,
    TaskNotFoundError,
)
from taskdispatch.domain.models import TaskStatus
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.api import serve
from tests.support.probes import add_probe_task, wait_until
from tests.support.runner import housekeep, message_for, runner_for
from tests.support.stack import e2e_env, settings_of

KEYS = Keys("td:")
EXPECTED = (TaskConflictError, TaskNotFoundError, InvalidTaskError, AccountTaskExistsError)


async def _one_op(d: TaskDispatcher, rng: random.Random, account: str, n: int) -> str:
    tasks = await d.account_tasks(account)
    if not tasks:
        await add_probe_task(d, account, interval=1)
        return "create"
    task_id = tasks[0].task_id
    op = rng.choice(["pause", "resume", "reorder", "run", "patch", "patch", "delete", "runs"])
    if op == "pause":
        await d.pause_task(task_id)
    elif op == "resume":
        await d.resume_task(task_id)
    elif op == "reorder":
        await d.reorder_task(task_id, rng.randint(-5, 5))
    elif op == "run":
        await d.run_now(task_id)
    elif op == "patch":
        await d.update_task(task_id, TaskChange(interval=rng.choice([1, 2]), kwargs={"n": n}))
    elif op == "delete":
        await d.delete_task(task_id)
    else:
        await d.runs(task_id)
    return op


async def test_dispatcher_200_mixed_ops_racing_rounds_leave_store_consistent(redis_url: str):
    """200 pause/resume/reorder/run/patch/delete calls on one account while 2 runners race."""
    account = "acct-hammer"
    settings = Settings(redis_url=redis_url, key_prefix="td:")
    d = TaskDispatcher(settings, task_types={"probe", "noop"})
    first_id = await add_probe_task(d, account, interval=1)
    rng = random.Random(20240601)
    stop = threading.Event()
    errors: list[BaseException] = []
    rounds: Counter[str] = Counter()

    def handler(ctx: RunContext) -> None:
        time.sleep(random.uniform(0, 0.004))

    def race_rounds() -> None:
        runner, client = runner_for(redis_url, handler, lease_ttl_s=1)
        try:
            while not stop.is_set():
                task_id = client.get(KEYS.account(account))
                raw = client.hgetall(KEYS.task(task_id)) if task_id else {}
                if raw.get("status") == "pending" and raw.get("next_ms"):
                    try:
                        msg = message_for(client, task_id)
                    except (KeyError, ValueError):
                        continue  # changed between the two reads
                    rounds[runner.run(msg)["outcome"]] += 1
                else:
                    housekeep(Housekeeper(client, runner.settings))
                    time.sleep(0.001)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=race_rounds, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    ops: Counter[str] = Counter()

    async def client_loop(worker: int) -> None:
        for n in range(50):
            try:
                ops[await _one_op(d, rng, account, worker * 100 + n)] += 1
            except EXPECTED as exc:
                ops[type(exc).__name__] += 1

    try:
        await asyncio.gather(*(client_loop(i) for i in range(4)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == [], errors
    assert not any(thread.is_alive() for thread in threads)

    problems = await check_consistency(d.redis, d.keys)
    assert problems == [], problems
    total, tasks = await d.list_tasks()
    live = [t.task_id for t in tasks]
    assert total == len(live) <= 1
    assert [t.task_id for t in await d.account_tasks(account)] == live
    for task in tasks:
        assert task.run_id is None and task.status != TaskStatus.RUNNING
    # Deleted tasks leave nothing behind: no hash, no history, no index entry.
    keys = {k for k in await d.redis.keys("td:*")}
    assert all(k.removeprefix("td:task:") in live for k in keys if k.startswith("td:task:"))
    assert all(k.removeprefix("td:runs:") in live for k in keys if k.startswith("td:runs:"))
    if first_id not in live:
        assert ops["delete"] >= 1
    await d.close()
    print(f"\noperations: {dict(ops)}; rounds: {dict(rounds)}")
    assert sum(ops.values()) == 200
    assert rounds["ok"] > 0


@pytest.mark.e2e
async def test_api_concurrent_clients_with_live_worker_and_beat_leave_store_consistent(
    stack, redis_url: str
):
    """8 HTTP clients x 25 mixed calls on 3 tasks while a worker and a beat run their rounds."""
    s = stack(workers=1, beats=1, concurrency=2)
    app = create_app(settings_of(e2e_env(redis_url)))
    accounts = [f"acct-api-{i}" for i in range(3)]
    statuses: Counter[int] = Counter()

    async def create(client: httpx.AsyncClient, account: str) -> None:
        body = {
            "sys_type": "mac_intel",
            "xhs_account_id": account,
            "xhs_account_name": account,
            "task_type": "probe",
            "interval": 1,
            "valid_time_range": [0, 24],
            "kwargs": {"sleep_s": 0.05},
        }
        statuses[(await client.post("/api/v1/tasks/", json=body)).status_code] += 1

    async def one_client(client: httpx.AsyncClient, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            account = rng.choice(accounts)
            listed = (await client.get(f"/api/v1/accounts/{account}/tasks")).json()["tasks"]
            if not listed:
                await create(client, account)
                continue
            task_id = listed[0]["task_id"]
            call: tuple[str, str, dict[str, Any] | None] = rng.choice(
                [
                    ("POST", f"/api/v1/tasks/{task_id}/pause", None),
                    ("POST", f"/api/v1/tasks/{task_id}/resume", None),
                    ("POST", f"/api/v1/tasks/{task_id}/reorder", {"priority_offset": -3}),
                    ("POST", f"/api/v1/tasks/{task_id}/run", None),
                    ("PATCH", f"/api/v1/tasks/{task_id}", {"interval": rng.choice([1, 2])}),
                    ("DELETE", f"/api/v1/tasks/{task_id}", None),
                    ("GET", f"/api/v1/tasks/{task_id}/runs", None),
                ]
            )
            method, url, body = call
            response = await client.request(method, url, json=body)
            statuses[response.status_code] += 1
            assert response.status_code in (200, 404, 409), (method, url, response.text)
            await asyncio.sleep(rng.uniform(0, 0.05))

    async with serve(app) as client:
        for account in accounts:
            await create(client, account)
        await asyncio.gather(*(one_client(client, seed) for seed in range(8)))
        await client.post("/api/v1/dispatcher/stop")
        listed = (await client.get("/api/v1/tasks/")).json()["tasks"]
        ids = [t["task_id"] for t in listed]
        wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=20, message="quiescence")
        check = (await client.get("/api/v1/dispatcher/check")).json()
    assert check == {"consistent": True, "problems": []}, check
    assert statuses[500] == 0
    rounds = s.view.probe_rounds()
    print(f"\nHTTP statuses: {dict(statuses)}; rounds run meanwhile: {len(rounds)}")
    assert rounds, "no round finished during the test: the race was not exercised"
    starts_by_account = Counter(x["account_id"] for x in s.view.probe_starts())
    assert set(starts_by_account) <= set(accounts)
    assert redis.Redis.from_url(redis_url).ping()
