"""Specification of the schedule views: GET /tasks/{id}/upcoming and POST /tasks/preview."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.support.api import CreateTask, create_body

SHANGHAI = ZoneInfo("Asia/Shanghai")


def times(body: dict[str, Any]) -> list[datetime]:
    return [datetime.fromisoformat(t) for t in body["upcoming"]]


# --------------------------------------------------------------------------- upcoming


@pytest.mark.parametrize("count", [0, 101, -1])
async def test_upcoming_count_out_of_bounds_is_422(
    client: httpx.AsyncClient, create_task: CreateTask, count: int
) -> None:
    """count must be in 1..100; the error names the parameter."""
    task_id = (await create_task())["task_id"]
    response = await client.get(f"/api/v1/tasks/{task_id}/upcoming", params={"count": count})
    assert response.status_code == 422
    assert response.json()["error"].startswith("count ")


async def test_upcoming_default_lists_ten_from_next_execution_time(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Without count: ten times, the first being the task's next_execution_time."""
    info = await create_task()
    response = await client.get(f"/api/v1/tasks/{info['task_id']}/upcoming")
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == info["task_id"]
    assert body["timezone"] == "Asia/Shanghai"
    assert len(body["upcoming"]) == 10
    assert body["upcoming"][0] == info["next_execution_time"]


async def test_upcoming_always_open_window_is_spaced_by_interval(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """With the window always open, consecutive runs are exactly one interval apart."""
    info = await create_task(interval=1800)
    body = (await client.get(f"/api/v1/tasks/{info['task_id']}/upcoming?count=100")).json()
    runs = times(body)
    assert len(runs) == 100
    assert {b - a for a, b in pairwise(runs)} == {timedelta(seconds=1800)}


async def test_upcoming_runs_stay_inside_window_and_restart_at_its_opening(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Every run starts inside [8, 22); within a day they are interval apart, else at 08:00."""
    info = await create_task(interval=5400, valid_time_range=[8, 22])
    body = (await client.get(f"/api/v1/tasks/{info['task_id']}/upcoming?count=40")).json()
    runs = times(body)
    assert len(runs) == 40
    assert all(8 <= run.astimezone(SHANGHAI).hour < 22 for run in runs)
    for before, after in pairwise(runs):
        gap = after - before
        if gap != timedelta(seconds=5400):
            # The window closed in between: the next run is the window's next opening.
            assert gap > timedelta(seconds=5400)
            assert after.astimezone(SHANGHAI).time().isoformat() == "08:00:00"


async def test_upcoming_times_are_in_the_tasks_zone(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Times carry the offset of the task's own zone, not the server's."""
    info = await create_task(timezone="America/New_York")
    body = (await client.get(f"/api/v1/tasks/{info['task_id']}/upcoming?count=3")).json()
    assert body["timezone"] == "America/New_York"
    zone = ZoneInfo("America/New_York")
    assert all(t.utcoffset() == t.astimezone(zone).utcoffset() for t in times(body))


async def test_upcoming_paused_task_is_empty(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A task paused without `until` has no upcoming runs until someone resumes it."""
    task_id = (await create_task())["task_id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/pause")).status_code == 200
    body = (await client.get(f"/api/v1/tasks/{task_id}/upcoming")).json()
    assert body["upcoming"] == []


async def test_upcoming_paused_until_starts_after_until(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Paused with `until` beyond the next slot: runs start at `until` and go on by interval."""
    info = await create_task(interval=3600)
    next_run = datetime.fromisoformat(info["next_execution_time"])
    until = (next_run + timedelta(hours=5)).replace(microsecond=0)
    response = await client.post(
        f"/api/v1/tasks/{info['task_id']}/pause", json={"until": until.isoformat()}
    )
    assert response.status_code == 200, response.text
    runs = times((await client.get(f"/api/v1/tasks/{info['task_id']}/upcoming?count=3")).json())
    assert runs == [until + timedelta(hours=h) for h in range(3)]


async def test_upcoming_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    """An unknown id answers the document's 404."""
    response = await client.get("/api/v1/tasks/nope/upcoming")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "任务不存在: nope"}


# --------------------------------------------------------------------------- preview


async def test_preview_lists_times_and_stores_nothing(client: httpx.AsyncClient) -> None:
    """Preview answers the draft's next runs; no task is stored and the account stays free."""
    response = await client.post(
        "/api/v1/tasks/preview", params={"count": 5}, json=create_body("draft", interval=600)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["timezone"] == "Asia/Shanghai"
    runs = times(body)
    assert len(runs) == 5
    assert {b - a for a, b in pairwise(runs)} == {timedelta(seconds=600)}
    assert (await client.get("/api/v1/tasks/")).json()["total"] == 0
    assert (await client.get("/api/v1/accounts/draft/tasks")).json()["total"] == 0
    assert (await client.post("/api/v1/tasks/", json=create_body("draft"))).status_code == 200


async def test_preview_matches_what_create_then_schedules(client: httpx.AsyncClient) -> None:
    """The preview of a body with start_at equals the created task's upcoming runs."""
    start = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    body = create_body(valid_time_range=[8, 22], interval=7200, start_at=start.isoformat())
    preview = (await client.post("/api/v1/tasks/preview?count=12", json=body)).json()
    task_id = (await client.post("/api/v1/tasks/", json=body)).json()["task_id"]
    upcoming = (await client.get(f"/api/v1/tasks/{task_id}/upcoming?count=12")).json()
    assert preview["upcoming"] == upcoming["upcoming"]
    assert preview["upcoming"][0] == start.isoformat()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"valid_time_range": [9, 9]}, id="empty-window"),
        pytest.param({"interval": 0}, id="zero-interval"),
        pytest.param({"interval": "3600"}, id="string-interval"),
        pytest.param({"task_end_time": "2001-01-01"}, id="end-in-past"),
        pytest.param({"timezone": "Mars/Olympus"}, id="unknown-zone"),
        pytest.param({"task_type": "nope"}, id="unknown-type"),
        pytest.param({"intervall": 60}, id="unknown-field"),
    ],
)
async def test_preview_invalid_body_fails_like_create(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    """Preview rejects what create rejects, with the same status and error body."""
    body = create_body(**overrides)
    preview = await client.post("/api/v1/tasks/preview", json=body)
    create = await client.post("/api/v1/tasks/", json=body)
    assert preview.status_code in (400, 422)
    assert (preview.status_code, preview.json()) == (create.status_code, create.json())


@pytest.mark.parametrize("count", [0, 101])
async def test_preview_count_out_of_bounds_is_422(client: httpx.AsyncClient, count: int) -> None:
    """Preview bounds count like upcoming."""
    response = await client.post(f"/api/v1/tasks/preview?count={count}", json=create_body())
    assert response.status_code == 422
    assert response.json()["error"].startswith("count ")


async def test_preview_path_is_not_shadowed_by_task_id_routes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """POST /tasks/preview reaches the preview, and it is routed before any /{task_id} route."""
    paths = [route.path for route in iter_route_contexts(app.routes)]
    preview = paths.index("/api/v1/tasks/preview")
    assert preview < min(i for i, p in enumerate(paths) if p.startswith("/api/v1/tasks/{"))
    response = await client.post("/api/v1/tasks/preview", json=create_body())
    assert response.status_code == 200
    assert set(response.json()) == {"timezone", "upcoming", "slots", "windows_24h"}


# --------------------------------------------------------------------------- days


async def test_days_answers_each_tasks_latest_round_and_next_24_hours_in_order(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A page's rows in one request: in the order asked, unknown ids left out, a task
    without rounds has last_run null, and upcoming covers its next 24 hours."""
    hourly = await create_task("a", interval=3600)
    frequent = await create_task("b", interval=60)
    ids = f"{frequent['task_id']},no-such-task,{hourly['task_id']}"
    answer = (await client.get("/api/v1/tasks/days", params={"ids": ids})).json()
    assert [d["task_id"] for d in answer["tasks"]] == [frequent["task_id"], hourly["task_id"]]
    by_id = {d["task_id"]: d for d in answer["tasks"]}
    assert by_id[hourly["task_id"]]["last_run"] is None
    assert len(by_id[hourly["task_id"]]["upcoming"]) == 25  # 24 h of hourly rounds, and one
    assert len(by_id[frequent["task_id"]]["upcoming"]) == 100  # capped: drawn as a band
    assert by_id[hourly["task_id"]]["upcoming"][0] == hourly["next_execution_time"]


async def test_days_shows_the_latest_round_of_a_task(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: Any
) -> None:
    """After a round, last_run is its record (the same as /runs?limit=1)."""
    info = await create_task("a")
    await dispatcher.store.redis.lpush(
        dispatcher.keys.runs(info["task_id"]),
        '{"outcome": "ok", "scheduled_ms": 1767225600000, "round_num": 1}',
    )
    answer = (await client.get("/api/v1/tasks/days", params={"ids": info["task_id"]})).json()
    runs = (await client.get(f"/api/v1/tasks/{info['task_id']}/runs", params={"limit": 1})).json()
    assert answer["tasks"][0]["last_run"] == runs["runs"][0]


@pytest.mark.parametrize("ids", ["", ",".join(f"t{i}" for i in range(201))])
async def test_days_without_ids_or_over_200_is_422(client: httpx.AsyncClient, ids: str) -> None:
    """1..200 ids, named in the error."""
    response = await client.get("/api/v1/tasks/days", params={"ids": ids})
    assert response.status_code == 422
    assert "ids" in response.json()["error"]
