"""Specification of `waiting_reason` in task reads: every code, reached through the API.

The world around a task (worker heartbeats, account leases, the dispatcher flag) is
arranged in Redis the way workers, beats and rounds write it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis.asyncio.connection import AbstractConnection

from taskdispatch.domain.models import TaskStatus
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import CreateTask

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKER = "celery@test-host"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def worker_heartbeat(
    dispatcher: TaskDispatcher, *, queues: str = "celery", age_ms: int = 0
) -> None:
    """What a Celery worker records: its heartbeat and the queues it consumes."""
    keys = dispatcher.keys
    await dispatcher.redis.zadd(keys.workers(), {WORKER: now_ms() - age_ms})
    await dispatcher.redis.hset(keys.worker_queues(), WORKER, queues)


async def change(dispatcher: TaskDispatcher, task_id: str, **fields: Any) -> None:
    """Rewrite the stored task (and its indexes) as a round or recovery would."""
    await dispatcher.store.mutate(task_id, lambda t: t.evolve(**fields))


async def reason(client: httpx.AsyncClient, task_id: str) -> Any:
    response = await client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()["waiting_reason"]


@pytest.fixture
async def task_id(create_task: CreateTask) -> str:
    """A pending task whose window is always open, next run one hour from now."""
    info = await create_task()
    value: str = info["task_id"]
    return value


# --------------------------------------------------------------------------- no reason


async def test_reason_scheduled_task_with_live_worker_is_null(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A pending task due later, with a worker for its queue, has nothing in its way."""
    await worker_heartbeat(dispatcher)
    assert await reason(client, task_id) is None


async def test_reason_running_task_is_null(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A running task is not waiting, whatever else holds (here: no worker at all)."""
    await change(dispatcher, task_id, status=TaskStatus.RUNNING, started_ms=now_ms(), worker=WORKER)
    assert await reason(client, task_id) is None


# --------------------------------------------------------------------------- each code


async def test_reason_paused_carries_until_and_note(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """Paused with a body: the reason and the task both show `until` (ISO) and the note."""
    await worker_heartbeat(dispatcher)
    until = (datetime.now(SHANGHAI) + timedelta(hours=2)).replace(microsecond=0)
    response = await client.post(
        f"/api/v1/tasks/{task_id}/pause", json={"until": until.isoformat(), "note": "申诉中"}
    )
    assert response.status_code == 200, response.text
    info = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert info["waiting_reason"] == {
        "code": "paused",
        "until": until.isoformat(),
        "note": "申诉中",
    }
    assert (info["paused_until"], info["pause_note"]) == (until.isoformat(), "申诉中")


async def test_reason_paused_without_body_has_null_details(
    client: httpx.AsyncClient, task_id: str
) -> None:
    """The document's bodiless pause still works; nothing says when it ends."""
    assert (await client.post(f"/api/v1/tasks/{task_id}/pause")).status_code == 200
    assert await reason(client, task_id) == {"code": "paused", "until": None, "note": None}


async def test_reason_paused_naive_until_is_read_in_task_zone(
    client: httpx.AsyncClient, task_id: str
) -> None:
    """A naive `until` means the task's own zone, and reads show it with that offset."""
    local = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    naive = local.replace(tzinfo=None).isoformat()
    response = await client.post(f"/api/v1/tasks/{task_id}/pause", json={"until": naive})
    assert response.status_code == 200, response.text
    assert (await reason(client, task_id))["until"] == local.isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"until": "2001-01-01T00:00:00"}, "until", id="until-in-past"),
        pytest.param({"until": "tomorrow"}, "until", id="until-not-iso"),
        pytest.param({"note": 5}, "note", id="note-not-text"),
        pytest.param({"untill": "2030-01-01T00:00:00"}, "untill", id="unknown-field"),
    ],
)
async def test_pause_invalid_body_is_422_and_task_stays_pending(
    client: httpx.AsyncClient, task_id: str, body: dict[str, Any], field: str
) -> None:
    """A bad pause body names its field and changes nothing."""
    response = await client.post(f"/api/v1/tasks/{task_id}/pause", json=body)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert response.json()["error"].startswith(field)
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "pending"


async def test_reason_dispatcher_stopped(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """With the dispatcher flag off, a pending task waits for it."""
    await worker_heartbeat(dispatcher)
    assert (await client.post("/api/v1/dispatcher/stop")).status_code == 200
    assert await reason(client, task_id) == {"code": "dispatcher_stopped"}


async def test_reason_outside_window_names_next_window_start(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, create_task: CreateTask
) -> None:
    """A window that excludes now: the reason gives its next opening, in the task's zone."""
    await worker_heartbeat(dispatcher)
    now = datetime.now(SHANGHAI)
    # Opens in 2 to 3 hours, so the hour ticking over during the test changes nothing.
    start = (now.hour + 3) % 24
    info = await create_task(valid_time_range=[start, (start + 4) % 24])
    opens = now.replace(hour=start, minute=0, second=0, microsecond=0)
    if opens <= now:
        opens += timedelta(days=1)
    assert await reason(client, info["task_id"]) == {
        "code": "outside_window",
        "window_opens": opens.isoformat(),
    }
    assert info["next_execution_time"] == opens.isoformat()


async def test_reason_account_locked(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """Another round holds the account's lease: the task waits for it."""
    await worker_heartbeat(dispatcher)
    await dispatcher.redis.set(dispatcher.keys.lock("account_1"), "other-owner", px=30_000)
    assert await reason(client, task_id) == {"code": "account_locked"}


async def test_reason_no_worker_for_queue_without_heartbeat(
    client: httpx.AsyncClient, task_id: str
) -> None:
    """No worker has a heartbeat: the reason names the queue the round would go to."""
    assert await reason(client, task_id) == {"code": "no_worker_for_queue", "queue": "celery"}


@pytest.mark.parametrize(
    ("queues", "age_ms"),
    [
        pytest.param("other,queues", 0, id="worker-on-other-queue"),
        pytest.param("celery", 60_000, id="stale-heartbeat"),
    ],
)
async def test_reason_no_worker_for_queue_with_unfit_worker(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str, queues: str, age_ms: int
) -> None:
    """A worker on other queues, or one whose heartbeat is old, does not count."""
    await worker_heartbeat(dispatcher, queues=queues, age_ms=age_ms)
    assert (await reason(client, task_id))["code"] == "no_worker_for_queue"


async def test_reason_backlog_reports_seconds_waited(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """Due in the past with a live worker: backlog, with how long it has waited."""
    await worker_heartbeat(dispatcher)
    await change(dispatcher, task_id, next_ms=now_ms() - 5_000)
    got = await reason(client, task_id)
    assert got["code"] == "backlog"
    assert 5 <= got["waiting_s"] < 60


async def test_reason_error_carries_last_error(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A task stopped after failures shows its last error."""
    await change(dispatcher, task_id, status=TaskStatus.ERROR, failures=3, last_error="boom")
    assert await reason(client, task_id) == {"code": "error", "last_error": "boom"}


async def test_reason_completed(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, task_id: str
) -> None:
    """A task past its end is completed."""
    await change(dispatcher, task_id, status=TaskStatus.COMPLETED, next_ms=None)
    assert await reason(client, task_id) == {"code": "completed"}


# --------------------------------------------------------------------------- lists


async def test_reason_in_list_and_account_reads_matches_detail(
    client: httpx.AsyncClient, dispatcher: TaskDispatcher, create_task: CreateTask
) -> None:
    """List items and account reads carry the same reason as the detail read."""
    await worker_heartbeat(dispatcher)
    free = (await create_task("free"))["task_id"]
    locked = (await create_task("locked"))["task_id"]
    await dispatcher.redis.set(dispatcher.keys.lock("locked"), "owner", px=30_000)
    by_id = {t["task_id"]: t for t in (await client.get("/api/v1/tasks/")).json()["tasks"]}
    assert by_id[free]["waiting_reason"] is None
    assert by_id[locked]["waiting_reason"] == {"code": "account_locked"}
    account = (await client.get("/api/v1/accounts/locked/tasks")).json()
    assert account["tasks"][0]["waiting_reason"] == {"code": "account_locked"}


async def test_reason_list_page_costs_two_round_trips_whatever_its_size(
    client: httpx.AsyncClient,
    create_task: CreateTask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of 100 tasks with their reasons: the page's ids, then one read of the tasks
    with every fact their reasons need; not a round trip per task."""
    for i in range(100):
        await create_task(f"account_{i}")
    sent: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent.append(1)
        await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    page = (await client.get("/api/v1/tasks/?limit=100")).json()
    assert len(page["tasks"]) == 100
    assert len(sent) == 2


async def test_reason_single_task_read_costs_one_round_trip(
    client: httpx.AsyncClient,
    create_task: CreateTask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET /tasks/{id}: the task and its waiting reason's facts in one round trip."""
    task_id = (await create_task())["task_id"]
    await client.get(f"/api/v1/tasks/{task_id}")  # the read script is loaded once
    sent: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent.append(1)
        await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 200
    assert len(sent) == 1
