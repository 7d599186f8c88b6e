"""Specification of the task listing's filters, search and order (GET /api/v1/tasks/),
against an independent oracle: the full list, filtered and sorted in Python."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.store import tasks as store_module
from tests.support.api import CreateTask

SYS_TYPES = ("mac_intel", "mac_arm")
TASK_TYPES = ("xhs_type", "noop")
TAGS = ("team:a", "team:b", "device:1", "device:2")


async def _fleet(create_task: CreateTask, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """40 tasks with seeded random tags, types and names; some paused, some completed."""
    rng = random.Random(7)
    made = []
    for i in range(40):
        info = await create_task(
            f"acct-{i:02d}",
            xhs_account_name=rng.choice(("Alice", "alina", "Bob", "账号")) + f" {i}",
            sys_type=rng.choice(SYS_TYPES),
            task_type=rng.choice(TASK_TYPES),
            tags=rng.sample(TAGS, rng.randint(0, 2)),
            interval=rng.choice((60, 3600, 7200)),
        )
        made.append(info)
    for info in made[::5]:
        assert (await client.post(f"/api/v1/tasks/{info['task_id']}/pause")).status_code == 200
    return made


async def _everything(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    body = (await client.get("/api/v1/tasks/", params={"limit": 1000})).json()
    tasks: list[dict[str, Any]] = body["tasks"]
    return tasks


def _oracle(tasks: list[dict[str, Any]], params: dict[str, Any]) -> list[str]:
    """The ids the listing must answer, in order, from the full list."""

    def keep(t: dict[str, Any]) -> bool:
        q = params.get("q")
        return (
            params.get("status") in (None, t["status"])
            and params.get("tag") in (None, *t["tags"])
            and params.get("sys_type") in (None, t["sys_type"])
            and params.get("task_type") in (None, t["task_type"])
            and (
                q is None
                or t["account_id"].lower().startswith(q.lower())
                or t["account_name"].lower().startswith(q.lower())
            )
            and (params.get("sort") != "next" or t["next_execution_time"] is not None)
        )

    kept = [t for t in tasks if keep(t)]
    if params.get("sort") == "next":
        kept.sort(key=lambda t: (t["next_execution_time"], t["task_id"]))
    elif params.get("q") is not None:
        kept.sort(key=lambda t: (t["created_at"], t["task_id"]))
    return [t["task_id"] for t in kept]


QUERIES = [
    {"tag": "team:a"},
    {"sys_type": "mac_arm"},
    {"task_type": "noop"},
    {"status": "paused", "tag": "device:1"},
    {"status": "pending", "sys_type": "mac_intel"},
    {"tag": "team:b", "sys_type": "mac_intel"},
    {"tag": "team:a", "task_type": "xhs_type", "status": "pending"},
    {"q": "al"},
    {"q": "ACCT-1"},
    {"q": "账号", "status": "pending"},
    {"q": "b", "tag": "team:a"},
    {"sort": "next"},
    {"sort": "next", "status": "paused"},
    {"sort": "next", "tag": "device:2"},
    {"sort": "next", "sys_type": "mac_arm", "status": "pending"},
    {"tag": "nobody"},
]


@pytest.mark.parametrize(
    "params", QUERIES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items())
)
async def test_list_filters_match_the_oracle_in_every_page(
    client: httpx.AsyncClient, create_task: CreateTask, params: dict[str, Any]
) -> None:
    """Every filter combination answers exactly the oracle's tasks, in its order, page by
    page (pages of 7), with the oracle's total."""
    await _fleet(create_task, client)
    expected = _oracle(await _everything(client), params)
    got: list[str] = []
    for offset in range(0, 42, 7):
        response = await client.get(
            "/api/v1/tasks/", params={**params, "limit": 7, "offset": offset}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(expected)
        got += [t["task_id"] for t in body["tasks"]]
    assert got == expected


async def test_list_sort_next_follows_a_run_now(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A run now moves a task to the head of sort=next."""
    tasks = [await create_task(f"acct-{i}", interval=3600) for i in range(3)]
    last = tasks[-1]["task_id"]
    assert (await client.post(f"/api/v1/tasks/{last}/run")).status_code == 200
    body = (await client.get("/api/v1/tasks/", params={"sort": "next"})).json()
    assert body["tasks"][0]["task_id"] == last


async def test_list_search_follows_a_renamed_account(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A PATCH of account_name is found by its new name and no longer by its old one."""
    task_id = (await create_task("acct-1", xhs_account_name="Old name"))["task_id"]
    patch = await client.patch(f"/api/v1/tasks/{task_id}", json={"account_name": "Zeta"})
    assert patch.status_code == 200
    assert (await client.get("/api/v1/tasks/", params={"q": "old"})).json()["total"] == 0
    assert (await client.get("/api/v1/tasks/", params={"q": "zet"})).json()["total"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "random"}, "sort"),
        ({"q": ""}, "q"),
        ({"q": "x" * 129}, "q"),
        ({"sys_type": "a b"}, "sys_type"),
        ({"tag": "a,b"}, "tag"),
        ({"status": "sleeping"}, "status"),
    ],
)
async def test_list_bad_filter_is_422_naming_it(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    """A bad filter value is a 422 whose details name the parameter."""
    response = await client.get("/api/v1/tasks/", params=params)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


async def test_listing_indexes_stay_consistent_through_changes(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """Creates, pauses, tag and name PATCHes and deletes leave every listing index exact."""
    made = await _fleet(create_task, client)
    for info in made[:10]:
        task_id = info["task_id"]
        await client.patch(
            f"/api/v1/tasks/{task_id}", json={"tags": ["team:z"], "account_name": "N"}
        )
    for info in made[10:15]:
        await client.delete(f"/api/v1/tasks/{info['task_id']}")
    assert await check_consistency(dispatcher.redis, dispatcher.keys) == []


@pytest.mark.parametrize("params", [q for q in QUERIES if q.get("sort") == "next"], ids=str)
async def test_list_sort_next_walking_the_index_matches_the_oracle(
    client: httpx.AsyncClient,
    create_task: CreateTask,
    params: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sort=next past the in-memory bound (lowered to 3) walks the next-run index and still
    answers the oracle's tasks and total."""
    monkeypatch.setattr(store_module, "_SORT_IN_MEMORY", 3)
    await _fleet(create_task, client)
    expected = _oracle(await _everything(client), params)
    got: list[str] = []
    for offset in range(0, 42, 7):
        body = (
            await client.get("/api/v1/tasks/", params={**params, "limit": 7, "offset": offset})
        ).json()
        assert body["total"] == len(expected)
        got += [t["task_id"] for t in body["tasks"]]
    assert got == expected
