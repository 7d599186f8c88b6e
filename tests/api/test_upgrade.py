"""Upgrade in place: a store written by the release before the audit was stored once is
served by this code with nothing lost.

The store is `tests/fixtures/store-before-audit-once.json`, written by that release's own
code (`python -m tests.support.make_upgrade_fixture`); every expectation below is read
from it, not from this code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from taskdispatch.settings import Settings
from tests.support.api import serve
from tests.support.make_upgrade_fixture import load, read_fixture

FIXTURE = read_fixture()
PREFIX: str = FIXTURE["prefix"]
STORED: dict[str, Any] = FIXTURE["keys"]


def _stored(kind: str) -> dict[str, Any]:
    """The values of the stored keys `<prefix><kind>:<task_id>`, by task_id."""
    start = f"{PREFIX}{kind}:"
    return {k.removeprefix(start): v["value"] for k, v in STORED.items() if k.startswith(start)}


TASKS = _stored("task")
RUNS = _stored("runs")
TASK_LISTS = _stored("audit")
TRAIL: list[list[Any]] = STORED[f"{PREFIX}audit"]["value"]


@pytest.fixture
async def upgraded(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API started over the store the release before wrote."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        load(client, STORED)
    finally:
        client.close()
    async with serve(create_app(Settings(redis_url=redis_url, key_prefix=PREFIX))) as api:
        yield api


async def _get(api: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await api.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """What an entry of the API says, in the stored terms of the release before."""
    return {
        "at_ms": _ms(entry["at"]),
        "actor": entry["actor"],
        "action": entry["action"],
        "task_id": entry["task_id"],
        "account_id": entry["account_id"],
        "limit": entry["limit"],
        "changes": entry["changes"],
        "note": entry["note"],
        "request": entry["request"],
    }


def _written(text: str) -> dict[str, Any]:
    """An entry as the release before wrote it (absent fields are null, as the API says)."""
    data = json.loads(text)
    changes = {
        name: {"before": change.get("before"), "after": change.get("after")}
        for name, change in data.get("changes", {}).items()
    }
    fields = ("task_id", "account_id", "limit", "note", "request")
    return {
        "at_ms": data["at_ms"],
        "actor": data["actor"],
        "action": data["action"],
        **{name: data.get(name) for name in fields},
        "changes": changes,
    }


def _kwargs(stored: dict[str, str]) -> Any:
    """The run parameters of a stored task hash (kept in 64-byte pieces)."""
    pieces = sorted((k for k in stored if k.startswith("kwargs")), key=lambda k: (len(k), k))
    return json.loads("".join(stored[k] for k in pieces))


async def _whole_trail(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    before = None
    while True:
        cursor: dict[str, str] = {"before": before} if before else {}
        page = await _get(api, "/api/v1/audit", limit=4, **params, **cursor)
        entries += page["entries"]
        before = page["next_before"]
        if before is None:
            return entries


def test_upgrade_fixture_holds_what_the_release_before_wrote() -> None:
    """The store has tasks, rounds, both audit copies, a limit and the stopped flag."""
    assert len(TASKS) == 5
    assert sum(len(runs) for runs in RUNS.values()) == 4
    assert set(TASK_LISTS) == set(TASKS)
    assert all(set(fields) == {"e"} for _, fields in TRAIL)
    assert STORED[f"{PREFIX}dispatcher"]["value"] == {"enabled": "0"}


async def test_upgrade_every_task_is_served_as_stored(upgraded: httpx.AsyncClient) -> None:
    """Listed and read one by one: account, name, status, interval, rounds, run parameters."""
    listed = await _get(upgraded, "/api/v1/tasks/", limit=1000)
    assert sorted(t["task_id"] for t in listed["tasks"]) == sorted(TASKS)
    assert listed["total"] == len(TASKS)
    for task_id, stored in TASKS.items():
        task = await _get(upgraded, f"/api/v1/tasks/{task_id}")
        assert (task["account_id"], task["account_name"], task["status"]) == (
            stored["account_id"],
            stored["account_name"],
            stored["status"],
        )
        assert task["interval"] == int(stored["interval_s"])
        assert task["round_num"] == int(stored.get("round_num", 0))
        assert task["kwargs"] == _kwargs(stored)
        assert task["pause_note"] == stored.get("pause_note")


async def test_upgrade_every_round_record_is_served(upgraded: httpx.AsyncClient) -> None:
    """Each task's rounds, newest first, with their outcome, number and error."""
    for task_id in TASKS:
        runs = (await _get(upgraded, f"/api/v1/tasks/{task_id}/runs"))["runs"]
        stored = [json.loads(text) for text in RUNS.get(task_id, [])]
        assert [(r["round_num"], r["outcome"], r["error"]) for r in runs] == [
            (r["round_num"], r["outcome"], r["error"]) for r in stored
        ]


async def test_upgrade_whole_trail_is_served_with_its_cursors(
    upgraded: httpx.AsyncClient,
) -> None:
    """Every entry of the trail, newest first, under its id, the deleted task's included."""
    entries = await _whole_trail(upgraded)
    assert [e["id"] for e in entries] == [entry_id for entry_id, _ in reversed(TRAIL)]
    assert [_shown(e) for e in entries] == [_written(f["e"]) for _, f in reversed(TRAIL)]


async def test_upgrade_each_task_audit_is_its_old_list(upgraded: httpx.AsyncClient) -> None:
    """A task's own audit shows the copies its list held, newest first."""
    for task_id, texts in TASK_LISTS.items():
        entries = (await _get(upgraded, f"/api/v1/tasks/{task_id}/audit"))["entries"]
        assert [_shown(e) for e in entries] == [_written(text) for text in texts]


async def test_upgrade_new_change_leads_the_task_audit_before_its_old_entries(
    upgraded: httpx.AsyncClient,
) -> None:
    """A change made after the upgrade comes first, then every entry written before."""
    task_id = next(t for t, stored in TASKS.items() if stored["status"] == "pending")
    response = await upgraded.post(f"/api/v1/tasks/{task_id}/pause", json={"note": "升级后"})
    assert response.status_code == 200, response.text
    entries = (await _get(upgraded, f"/api/v1/tasks/{task_id}/audit"))["entries"]
    assert (entries[0]["action"], entries[0]["note"]) == ("pause", "升级后")
    assert [_shown(e) for e in entries[1:]] == [_written(t) for t in TASK_LISTS[task_id]]
    trail = await _whole_trail(upgraded, task_id=task_id)
    assert [e["id"] for e in trail[1:]] == [
        entry_id for entry_id, f in reversed(TRAIL) if json.loads(f["e"]).get("task_id") == task_id
    ]
    assert trail[0]["id"] == entries[0]["id"]


async def test_upgrade_keeps_the_dispatcher_flag_and_the_limits(
    upgraded: httpx.AsyncClient,
) -> None:
    """The dispatcher stays stopped; the limit keeps its rule."""
    status = await _get(upgraded, "/api/v1/dispatcher/status")
    assert status["enabled"] is False
    stored = json.loads(STORED[f"{PREFIX}limits"]["value"]["l1"])
    [limit] = (await _get(upgraded, "/api/v1/limits"))["limits"]
    assert (limit["name"], limit["max_concurrent"], limit["match"]["tag"]) == (
        "l1",
        stored["max_concurrent"],
        stored["match"]["tag"],
    )


async def test_upgrade_store_stays_consistent(upgraded: httpx.AsyncClient) -> None:
    """Tasks and their indexes agree, before and after a change made by this code."""
    assert (await _get(upgraded, "/api/v1/dispatcher/check"))["problems"] == []
    task_id = next(iter(TASKS))
    response = await upgraded.patch(f"/api/v1/tasks/{task_id}", json={"interval": 5400})
    assert response.status_code == 200, response.text
    assert (await _get(upgraded, "/api/v1/dispatcher/check"))["problems"] == []


async def test_upgrade_task_ids_and_instants_are_served_as_stored(
    upgraded: httpx.AsyncClient,
) -> None:
    """Each hash's own task_id and its created and updated instants are what the API says."""
    for task_id, stored in TASKS.items():
        task = await _get(upgraded, f"/api/v1/tasks/{task_id}")
        assert task["task_id"] == stored["task_id"] == task_id
        assert _ms(task["created_at"]) == int(stored["created_ms"])
        assert _ms(task["updated_at"]) == int(stored["updated_ms"])


async def test_upgrade_first_write_removes_the_stored_task_id(
    upgraded: httpx.AsyncClient, redis_url: str
) -> None:
    """A change to a hash written before deletes its task_id field (its key names it); the
    task still reads under its id."""
    task_id = next(t for t, stored in TASKS.items() if stored["status"] == "pending")
    response = await upgraded.post(f"/api/v1/tasks/{task_id}/pause", json={"note": "升级后"})
    assert response.status_code == 200, response.text
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stored = client.hgetall(f"{PREFIX}task:{task_id}")
    finally:
        client.close()
    assert "task_id" not in stored
    assert int(stored["updated_ms"]) > int(stored["created_ms"])
    task = await _get(upgraded, f"/api/v1/tasks/{task_id}")
    assert (task["task_id"], task["status"]) == (task_id, "paused")
