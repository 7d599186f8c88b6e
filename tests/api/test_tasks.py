"""Specification of /api/v1/tasks: create, list, detail, PATCH, delete, pause, resume, reorder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from bench.memory import DESIGN_BODY
from taskdispatch.domain.models import TaskStatus
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import CreateTask, create_body

TASK_INFO_FIELDS = {
    # Document sections 3.3.2 / 4.2.
    "task_id",
    "account_id",
    "account_name",
    "task_type",
    "status",
    "interval",
    "valid_time_range",
    "task_end_time",
    "last_execution_time",
    "next_execution_time",
    "created_at",
    "updated_at",
    "round_num",
    # Beyond the document.
    "sys_type",
    "timezone",
    "failures",
    "last_error",
    "started_at",
    "worker",
    "paused_until",
    "pause_note",
    "waiting_reason",
    # The calendar (docs/semantics.md).
    "windows",
    "weekdays",
    "blackout_dates",
    "jitter_s",
    "max_runs",
    "remaining_runs",
    "misfire_policy",
    "misfire_grace_s",
    "next_start",
    # Limits (docs/semantics.md).
    "tags",
    # Routing (docs/semantics.md, "Queues").
    "queue",
    # Live progress (docs/api.md, "The round in progress").
    "current_round",
}

MISSING = object()


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


# --------------------------------------------------------------------------- create


async def test_create_valid_body_returns_document_shape(client: httpx.AsyncClient) -> None:
    """POST /tasks/ answers success, task_id, message and task_info as in section 3.3.1."""
    response = await client.post("/api/v1/tasks/", json=create_body("account_1"))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "任务创建成功"
    info = body["task_info"]
    assert info["task_id"] == body["task_id"]
    assert info["account_id"] == "account_1"
    assert info["account_name"] == "name of account_1"
    assert info["status"] == "pending"
    assert set(info) == TASK_INFO_FIELDS


async def test_create_with_windows_alone_uses_them(client: httpx.AsyncClient) -> None:
    """A body giving only `windows` is not taken as giving the shorthand's default too."""
    body = create_body("account_w")
    del body["valid_time_range"]
    response = await client.post("/api/v1/tasks/", json={**body, "windows": ["09:00-11:30"]})
    assert response.status_code == 200, response.text
    info = response.json()["task_info"]
    assert (info["windows"], info["valid_time_range"]) == (["09:00-11:30"], None)


async def test_create_without_window_fields_gets_the_default_range(
    client: httpx.AsyncClient,
) -> None:
    """Neither windows nor valid_time_range: the document's default [8, 22]."""
    body = create_body("account_d")
    del body["valid_time_range"]
    response = await client.post("/api/v1/tasks/", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["task_info"]["valid_time_range"] == [8, 22]


async def test_create_first_run_is_one_interval_after_creation(create_task: CreateTask) -> None:
    """With an always-open window the first run is created_at + interval."""
    info = await create_task(interval=1800)
    assert at(info["next_execution_time"]) - at(info["created_at"]) == timedelta(seconds=1800)


async def test_create_without_trailing_slash_is_served_directly(
    client: httpx.AsyncClient,
) -> None:
    """POST /api/v1/tasks (no slash) creates the task instead of redirecting."""
    response = await client.post("/api/v1/tasks", json=create_body())
    assert response.status_code == 200
    assert response.json()["success"] is True


async def test_create_second_task_for_account_is_400_with_document_message(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """One task per account: the second create names the account and the existing task."""
    first = await create_task("account_1")
    response = await client.post("/api/v1/tasks/", json=create_body("account_1"))
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "error": f"账户ID 'account_1' 已存在任务 '{first['task_id']}'，同一账户不能创建多个任务",
    }


async def test_create_user_fields_and_kwargs_become_run_parameters(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """user_* fields and kwargs are stored together as the task's kwargs."""
    info = await create_task(user_query="开始运营", user_topic="科技", kwargs={"demo_fail": True})
    detail = (await client.get(f"/api/v1/tasks/{info['task_id']}")).json()
    assert detail["kwargs"] == {"user_query": "开始运营", "user_topic": "科技", "demo_fail": True}


async def test_create_times_use_the_task_timezone(create_task: CreateTask) -> None:
    """Times carry the UTC offset of the task's own time zone."""
    info = await create_task(timezone="America/New_York")
    created = at(info["created_at"])
    assert created.utcoffset() == created.astimezone(ZoneInfo("America/New_York")).utcoffset()
    assert info["timezone"] == "America/New_York"


async def test_create_task_end_time_is_shown_as_given(create_task: CreateTask) -> None:
    """task_end_time echoes the text the client sent."""
    info = await create_task(task_end_time="2099-02-08")
    assert info["task_end_time"] == "2099-02-08"


@pytest.mark.parametrize(
    ("overrides", "status_code", "field"),
    [
        pytest.param({"valid_time_range": [8, 8]}, 422, "valid_time_range", id="window-empty"),
        pytest.param({"valid_time_range": [25, 3]}, 422, "valid_time_range", id="window-hour-25"),
        pytest.param({"valid_time_range": [8]}, 422, "valid_time_range", id="window-one-hour"),
        pytest.param({"valid_time_range": ["a", "b"]}, 422, "valid_time_range", id="window-text"),
        pytest.param({"interval": 0}, 422, "interval", id="interval-zero"),
        pytest.param({"interval": -5}, 422, "interval", id="interval-negative"),
        pytest.param({"interval": "abc"}, 422, "interval", id="interval-text"),
        pytest.param({"interval": True}, 422, "interval", id="interval-bool"),
        pytest.param({"interval": 3600.5}, 422, "interval", id="interval-float"),
        pytest.param({"task_end_time": "2020-01-01"}, 422, "task_end_time", id="end-past"),
        pytest.param({"task_end_time": "next tuesday"}, 422, "task_end_time", id="end-garbage"),
        pytest.param({"timezone": "Mars/Olympus"}, 422, "timezone", id="timezone-unknown"),
        pytest.param({"start_at": "soon"}, 422, "start_at", id="start-at-garbage"),
        pytest.param({"task_type": "tiktok_type"}, 400, "task_type", id="task-type-unknown"),
        pytest.param({"xhs_account_id": MISSING}, 422, "xhs_account_id", id="account-missing"),
        pytest.param({"xhs_account_id": ""}, 422, "xhs_account_id", id="account-empty"),
        pytest.param({"xhs_account_id": "a b"}, 422, "xhs_account_id", id="account-space"),
        pytest.param({"xhs_account_id": 42}, 422, "xhs_account_id", id="account-number"),
        pytest.param({"sys_type": MISSING}, 422, "sys_type", id="sys-type-missing"),
        pytest.param({"kwargs": {"blob": "x" * 70_000}}, 422, "kwargs", id="kwargs-over-64k"),
        pytest.param({"kwargs": [1, 2]}, 422, "kwargs", id="kwargs-not-object"),
        pytest.param({"intervall": 60}, 422, "intervall", id="unknown-field"),
    ],
)
async def test_create_invalid_field_is_rejected_naming_it(
    client: httpx.AsyncClient, overrides: dict[str, Any], status_code: int, field: str
) -> None:
    """Bad input answers 400/422 with `error` starting with the field name, storing nothing."""
    body = create_body()
    for name, value in overrides.items():
        if value is MISSING:
            del body[name]
        else:
            body[name] = value
    response = await client.post("/api/v1/tasks/", json=body)
    assert response.status_code == status_code, response.text
    assert response.json()["success"] is False
    assert response.json()["error"].startswith(field)
    assert (await client.get("/api/v1/tasks/")).json()["total"] == 0


async def test_create_unknown_task_type_lists_known_types(client: httpx.AsyncClient) -> None:
    """The unknown-type error tells the client which types exist."""
    response = await client.post("/api/v1/tasks/", json=create_body(task_type="tiktok_type"))
    assert response.status_code == 400
    assert "xhs_type" in response.json()["error"]


async def test_create_body_not_json_is_400(client: httpx.AsyncClient) -> None:
    """A body that does not parse as JSON is a bad request, not a validation error."""
    response = await client.post(
        "/api/v1/tasks/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "请求体不是有效的 JSON"}


async def test_create_body_without_json_content_type_is_400(client: httpx.AsyncClient) -> None:
    """A form-encoded body (curl -d without -H) is refused with a hint about Content-Type."""
    response = await client.post("/api/v1/tasks/", data={"sys_type": "mac_intel"})
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]


# --------------------------------------------------------------------------- list


async def test_list_returns_total_and_task_infos(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """GET /tasks/ answers {"total", "tasks"} with full TaskInfo items (section 3.3.2)."""
    created = await create_task("account_1")
    body = (await client.get("/api/v1/tasks/")).json()
    assert body == {"total": 1, "tasks": [created]}


async def test_list_without_trailing_slash_is_served_directly(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """GET /api/v1/tasks (no slash) lists instead of redirecting."""
    await create_task()
    response = await client.get("/api/v1/tasks")
    assert response.status_code == 200
    assert response.json()["total"] == 1


async def test_list_status_filter_selects_that_status(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """status=paused lists only paused tasks."""
    await create_task("a1")
    paused = await create_task("a2")
    await client.post(f"/api/v1/tasks/{paused['task_id']}/pause")
    body = (await client.get("/api/v1/tasks/", params={"status": "paused"})).json()
    assert body["total"] == 1
    assert [t["task_id"] for t in body["tasks"]] == [paused["task_id"]]


async def test_list_account_filter_selects_its_task(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """account_id lists the one task of that account."""
    await create_task("a1")
    mine = await create_task("a2")
    body = (await client.get("/api/v1/tasks/", params={"account_id": "a2"})).json()
    assert body == {"total": 1, "tasks": [mine]}


async def test_list_paging_returns_window_and_counts_all(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """limit/offset select a page in creation order; total counts every match."""
    ids = [(await create_task(f"a{n}"))["task_id"] for n in range(5)]
    body = (await client.get("/api/v1/tasks/", params={"limit": 2, "offset": 2})).json()
    assert body["total"] == 5
    assert [t["task_id"] for t in body["tasks"]] == ids[2:4]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 1001}, "limit", id="limit-1001"),
        pytest.param({"offset": -1}, "offset", id="offset-negative"),
        pytest.param({"offset": 10**20}, "offset", id="offset-huge"),
        pytest.param({"limit": "abc"}, "limit", id="limit-text"),
        pytest.param({"status": "done"}, "status", id="status-unknown"),
    ],
)
async def test_list_invalid_query_is_422_naming_it(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    """Out-of-range or unknown query values answer 422 naming the parameter."""
    response = await client.get("/api/v1/tasks/", params=params)
    assert response.status_code == 422
    assert response.json()["error"].startswith(field)


# --------------------------------------------------------------------------- detail


async def test_get_returns_task_info_with_kwargs(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """GET /tasks/{id} is the TaskInfo plus kwargs (section 3.3.3)."""
    created = await create_task(user_query="开始运营")
    response = await client.get(f"/api/v1/tasks/{created['task_id']}")
    assert response.status_code == 200
    assert response.json() == {**created, "kwargs": {"user_query": "开始运营"}}


async def test_get_unknown_id_is_404_with_document_message(client: httpx.AsyncClient) -> None:
    """An unknown id answers 404 "任务不存在: <id>"."""
    response = await client.get("/api/v1/tasks/nope")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "任务不存在: nope"}


# --------------------------------------------------------------------------- PATCH


async def test_patch_interval_recomputes_next_run(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A new interval counts from creation: next = created_at + new interval."""
    created = await create_task(interval=3600)
    response = await client.patch(f"/api/v1/tasks/{created['task_id']}", json={"interval": 7200})
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["message"], body["task_id"]) == (
        True,
        "任务更新成功",
        created["task_id"],
    )
    info = body["task_info"]
    assert info["interval"] == 7200
    assert at(info["next_execution_time"]) - at(info["created_at"]) == timedelta(seconds=7200)


async def test_patch_paused_task_stays_paused(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Editing a paused task does not put it back on the schedule."""
    task_id = (await create_task())["task_id"]
    await client.post(f"/api/v1/tasks/{task_id}/pause")
    response = await client.patch(f"/api/v1/tasks/{task_id}", json={"interval": 7200})
    assert response.json()["task_info"]["status"] == "paused"


async def test_patch_absent_fields_are_unchanged(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Only the fields sent change: an interval edit keeps the end time and parameters."""
    created = await create_task(task_end_time="2099-01-01", user_query="q")
    task_id = created["task_id"]
    await client.patch(f"/api/v1/tasks/{task_id}", json={"interval": 7200})
    detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (detail["task_end_time"], detail["kwargs"]) == ("2099-01-01", {"user_query": "q"})


async def test_patch_explicit_null_clears_end_and_parameter(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """An explicit null removes task_end_time and a user_* parameter."""
    created = await create_task(task_end_time="2099-01-01", user_query="q")
    task_id = created["task_id"]
    await client.patch(f"/api/v1/tasks/{task_id}", json={"task_end_time": None, "user_query": None})
    detail = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (detail["task_end_time"], detail["kwargs"]) == (None, {})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"task_type": "noop"}, "task_type", id="unknown-field"),
        pytest.param({"interval": 0}, "interval", id="interval-zero"),
        pytest.param({"interval": "1h"}, "interval", id="interval-text"),
        pytest.param({"valid_time_range": [9, 9]}, "valid_time_range", id="window-empty"),
    ],
)
async def test_patch_invalid_body_is_422_naming_field(
    client: httpx.AsyncClient, create_task: CreateTask, body: dict[str, Any], field: str
) -> None:
    """Unknown or invalid fields answer 422 naming the field and change nothing."""
    created = await create_task()
    response = await client.patch(f"/api/v1/tasks/{created['task_id']}", json=body)
    assert response.status_code == 422
    assert response.json()["error"].startswith(field)
    detail = (await client.get(f"/api/v1/tasks/{created['task_id']}")).json()
    assert detail["updated_at"] == created["updated_at"]


async def test_patch_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    """PATCH of an unknown id answers 404."""
    response = await client.patch("/api/v1/tasks/nope", json={"interval": 60})
    assert response.status_code == 404


# --------------------------------------------------------------------------- delete


async def test_delete_returns_document_shape_and_task_is_gone(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """DELETE answers 任务删除成功; a later GET is 404 "任务不存在: <id>"."""
    task_id = (await create_task())["task_id"]
    response = await client.delete(f"/api/v1/tasks/{task_id}")
    assert response.json() == {"success": True, "message": "任务删除成功", "task_id": task_id}
    gone = await client.get(f"/api/v1/tasks/{task_id}")
    assert gone.status_code == 404
    assert gone.json() == {"success": False, "error": f"任务不存在: {task_id}"}


async def test_delete_frees_the_account_for_a_new_task(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """After a delete the same account can create a task again."""
    task_id = (await create_task("account_1"))["task_id"]
    await client.delete(f"/api/v1/tasks/{task_id}")
    response = await client.post("/api/v1/tasks/", json=create_body("account_1"))
    assert response.status_code == 200


async def test_delete_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    """Deleting an unknown (or already deleted) id answers 404."""
    response = await client.delete("/api/v1/tasks/nope")
    assert response.status_code == 404


# --------------------------------------------------------------------------- pause / resume


async def test_pause_pending_task_returns_document_shape(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Pause answers 任务暂停成功 with the new status (section 3.3.5)."""
    task_id = (await create_task())["task_id"]
    response = await client.post(f"/api/v1/tasks/{task_id}/pause")
    assert response.json() == {
        "success": True,
        "message": "任务暂停成功",
        "task_id": task_id,
        "status": "paused",
    }


async def test_pause_paused_task_is_409(client: httpx.AsyncClient, create_task: CreateTask) -> None:
    """Only pending or running tasks can be paused."""
    task_id = (await create_task())["task_id"]
    await client.post(f"/api/v1/tasks/{task_id}/pause")
    response = await client.post(f"/api/v1/tasks/{task_id}/pause")
    assert response.status_code == 409
    assert response.json()["success"] is False
    assert "paused" in response.json()["error"]


async def test_resume_paused_task_keeps_future_next_run(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Resume answers 任务恢复成功, status pending and the still-future next run (3.3.6)."""
    created = await create_task()
    task_id = created["task_id"]
    await client.post(f"/api/v1/tasks/{task_id}/pause")
    response = await client.post(f"/api/v1/tasks/{task_id}/resume")
    assert response.json() == {
        "success": True,
        "message": "任务恢复成功",
        "task_id": task_id,
        "status": "pending",
        "next_execution_time": created["next_execution_time"],
    }


async def test_resume_pending_task_is_409(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """Only paused or error tasks can be resumed."""
    task_id = (await create_task())["task_id"]
    response = await client.post(f"/api/v1/tasks/{task_id}/resume")
    assert response.status_code == 409
    assert "pending" in response.json()["error"]


@pytest.mark.parametrize("action", ["pause", "resume", "reorder"])
async def test_action_on_unknown_id_is_404(client: httpx.AsyncClient, action: str) -> None:
    """Pause, resume and reorder of an unknown id answer 404 with the document message."""
    body = {"priority_offset": 60} if action == "reorder" else None
    response = await client.post(f"/api/v1/tasks/nope/{action}", json=body)
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "任务不存在: nope"}


# --------------------------------------------------------------------------- reorder


async def test_reorder_negative_offset_moves_next_run_earlier(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """-1800 runs the task half an hour earlier (section 3.3.7)."""
    created = await create_task(interval=3600)
    task_id = created["task_id"]
    response = await client.post(
        f"/api/v1/tasks/{task_id}/reorder", json={"priority_offset": -1800}
    )
    body = response.json()
    assert (body["success"], body["message"], body["task_id"]) == (
        True,
        "任务优先级调整成功",
        task_id,
    )
    moved = at(created["next_execution_time"]) - at(body["new_next_execution_time"])
    assert moved == timedelta(seconds=1800)


async def test_reorder_past_now_is_clamped_to_now(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """An offset reaching into the past schedules the task now, never before."""
    created = await create_task(interval=3600)
    response = await client.post(
        f"/api/v1/tasks/{created['task_id']}/reorder", json={"priority_offset": -7200}
    )
    new_next = at(response.json()["new_next_execution_time"])
    assert at(created["created_at"]) <= new_next <= datetime.now(UTC)


async def test_reorder_positive_offset_moves_next_run_later(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """+3600 delays the next run by an hour."""
    created = await create_task(interval=3600)
    response = await client.post(
        f"/api/v1/tasks/{created['task_id']}/reorder", json={"priority_offset": 3600}
    )
    moved = at(response.json()["new_next_execution_time"]) - at(created["next_execution_time"])
    assert moved == timedelta(seconds=3600)


async def test_reorder_running_task_is_409_with_document_message(
    client: httpx.AsyncClient, create_task: CreateTask, dispatcher: TaskDispatcher
) -> None:
    """A running task cannot be reordered: 409 "任务正在运行，无法调整优先级"."""
    task_id = (await create_task())["task_id"]
    now = dispatcher.clock()
    await dispatcher.store.mutate(
        task_id, lambda t: t.evolve(status=TaskStatus.RUNNING, started_ms=now)
    )
    response = await client.post(
        f"/api/v1/tasks/{task_id}/reorder", json={"priority_offset": -1800}
    )
    assert response.status_code == 409
    assert response.json() == {"success": False, "error": "任务正在运行，无法调整优先级"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"priority_offset": "soon"}, id="text"),
        pytest.param({"priority_offset": 1.5}, id="float"),
        pytest.param({"priority_offset": 10**12}, id="beyond-a-year"),
    ],
)
async def test_reorder_invalid_offset_is_422(
    client: httpx.AsyncClient, create_task: CreateTask, body: dict[str, Any]
) -> None:
    """priority_offset must be whole seconds within a year."""
    task_id = (await create_task())["task_id"]
    response = await client.post(f"/api/v1/tasks/{task_id}/reorder", json=body)
    assert response.status_code == 422
    assert response.json()["error"].startswith("priority_offset")


async def test_run_now_pending_task_makes_it_due_now(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """POST /run moves the next execution to now (the window [0, 24] is always open)."""
    task_id = (await create_task(valid_time_range=[0, 24], interval=3600))["task_id"]
    before = (await client.get(f"/api/v1/tasks/{task_id}")).json()["next_execution_time"]
    response = await client.post(f"/api/v1/tasks/{task_id}/run")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["task_id"] == task_id
    assert body["next_execution_time"] < before


async def test_run_now_paused_task_answers_409(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A paused task must be resumed before it can run now."""
    task_id = (await create_task())["task_id"]
    await client.post(f"/api/v1/tasks/{task_id}/pause")
    response = await client.post(f"/api/v1/tasks/{task_id}/run")
    assert response.status_code == 409
    assert response.json()["success"] is False


async def test_runs_of_new_task_is_empty_list(
    client: httpx.AsyncClient, create_task: CreateTask
) -> None:
    """A task that never ran has an empty history."""
    task_id = (await create_task())["task_id"]
    response = await client.get(f"/api/v1/tasks/{task_id}/runs")
    assert response.status_code == 200
    assert response.json() == {"task_id": task_id, "runs": []}


async def test_runs_of_unknown_task_answers_404(client: httpx.AsyncClient) -> None:
    """History of a task that does not exist is a 404 with the document's message."""
    response = await client.get("/api/v1/tasks/nope/runs")
    assert response.status_code == 404
    assert response.json()["error"] == "任务不存在: nope"


# --------------------------------------------------------------------------- storage


async def test_stored_document_example_stays_compact_under_redis_defaults(
    create_task: CreateTask, redis_url: str
) -> None:
    """The document's example (its run parameters over 64 bytes of JSON) is stored as a
    listpack with Redis's default hash-max-listpack-value, and no field holds an empty value."""
    info = await create_task(
        "account_1",
        user_query="开始运营",
        user_topic="科技",
        user_style="专业",
        user_target_audience="技术爱好者",
        task_end_time="2099-12-31",
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = f"tdtest:task:{info['task_id']}"
        assert client.config_get("hash-max-listpack-value")["hash-max-listpack-value"] == "64"
        assert client.object("encoding", key) == "listpack"
        assert "" not in client.hvals(key)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("account_id", "account_name", "size_class"),
    [
        # The bench's longest account: 448 bytes is what keeps a task created through the
        # API within 2,560 B of Redis (docs/benchmarks.md, section 5).
        pytest.param("account_99999", "账号99999", 448, id="bench-account"),
        # A realistic one: a 20-character id and a 10-character Chinese name (30 bytes).
        pytest.param("a" * 20, "小红书运营账号测试一", 512, id="realistic-account"),
    ],
)
async def test_create_design_body_hash_stays_in_its_jemalloc_size_class(
    client: httpx.AsyncClient, redis_url: str, account_id: str, account_name: str, size_class: int
) -> None:
    """The design document's body, write tag and audit link included, is a listpack within
    jemalloc's size class `size_class`: one byte more costs the next class (64 B more)."""
    body = {**DESIGN_BODY, "xhs_account_id": account_id, "xhs_account_name": account_name}
    response = await client.post("/api/v1/tasks/", json=body)
    assert response.status_code == 200, response.text
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = f"tdtest:task:{response.json()['task_id']}"
        assert raw.hexists(key, "write_id") and raw.hexists(key, "audit")
        # A key of the same length holding a one-field listpack (16 bytes): what MEMORY USAGE
        # counts besides the listpack.
        bare = key[:-1] + "~"
        raw.hset(bare, "f", "v")
        listpack_class = int(raw.memory_usage(key, samples=0)) - int(raw.memory_usage(bare))
        assert listpack_class <= size_class - 16
    finally:
        raw.close()


async def test_patch_clearing_a_field_removes_it_from_the_hash(
    client: httpx.AsyncClient, create_task: CreateTask, redis_url: str
) -> None:
    """task_end_time set then cleared: the stored hash no longer has the field."""
    info = await create_task("account_1", task_end_time="2099-12-31")
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = f"tdtest:task:{info['task_id']}"
        assert raw.hexists(key, "end_ms")
        await client.patch(f"/api/v1/tasks/{info['task_id']}", json={"task_end_time": None})
        assert not raw.hexists(key, "end_ms") and not raw.hexists(key, "end_text")
    finally:
        raw.close()
