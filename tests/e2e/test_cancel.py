"""Stopping a running round, with real workers and beats: through the API (then next, then
pause), `celery control terminate SIGTERM <id>` and `celery control revoke <id>`.

In each case the handler's own record shows it was interrupted inside (RoundCancelled), the
round is recorded `cancelled` with no failure counted, the slot does not run again within
three lease TTLs, and a run-now right after starts the next round at once.
Flower's Terminate is specified in tests/e2e/test_flower_states.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from celery import Celery

from api.main import create_app
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.api import serve
from tests.support.probes import add_probe_task, holds_for, wait_until
from tests.support.stack import ROOT, Stack, e2e_env, settings_of

pytestmark = pytest.mark.e2e

# Far longer than any test: a round that only a cancel ends.
STUCK_S = 120
# Long enough that no slot falls due by itself during a test.
INTERVAL_S = 600
LEASE_TTL_S = 3.0


async def _stuck_round(
    s: Stack, dispatcher: TaskDispatcher, account: str, *, task_type: str = "probe"
) -> str:
    """A task whose round has started and would run for minutes."""
    task_id = await add_probe_task(
        dispatcher, account, sleep_s=STUCK_S, interval=INTERVAL_S, task_type=task_type
    )
    await dispatcher.run_now(task_id)
    wait_until(
        lambda: _starts(s, task_id) == 1 and s.view.task(task_id).run_id is not None,
        timeout_s=20,
        message="the round to start",
    )
    return task_id


def _starts(s: Stack, task_id: str) -> int:
    return sum(1 for x in s.view.probe_starts() if x["task_id"] == task_id)


def _interrupts(s: Stack, task_id: str) -> list[str]:
    return [x["by"] for x in s.view.probe_interrupts() if x["task_id"] == task_id]


async def _cancelled_then_quiet(
    s: Stack, dispatcher: TaskDispatcher, task_id: str, *, interrupt: str = "RoundCancelled"
) -> dict[str, Any]:
    """The round ends cancelled, interrupted inside its handler; the slot is not run again
    for three lease TTLs; returns the round's record."""
    wait_until(
        lambda: s.view.runs(task_id, "cancelled"), timeout_s=10, message="a cancelled record"
    )
    assert _interrupts(s, task_id) == [interrupt]
    task = s.view.task(task_id)
    assert (task.failures, task.run_id) == (0, None)
    holds_for(
        lambda: _starts(s, task_id) == 1 and not s.view.runs(task_id, "lost"),
        duration_s=3 * LEASE_TTL_S,
        message="no rerun of the cancelled slot",
    )
    [record] = s.view.runs(task_id)
    return record


async def _run_now_starts_at_once(s: Stack, dispatcher: TaskDispatcher, task_id: str) -> None:
    if s.view.task(task_id).status == "paused":
        await dispatcher.resume_task(task_id)  # resuming makes it due now
    else:
        await dispatcher.run_now(task_id)
    wait_until(lambda: _starts(s, task_id) == 2, timeout_s=5, message="the run-now round")


def _celery_app(redis_url: str) -> Celery:
    return create_celery_app(settings_of(e2e_env(redis_url)))


def _round_message_id(app: Celery, task_id: str) -> str:
    """The Celery task id of the task's round in progress (`celery inspect active`)."""
    found: list[str] = []

    def look() -> bool:
        active = app.control.inspect(timeout=2).active() or {}
        found[:] = [
            request["id"]
            for requests in active.values()
            for request in requests
            if (request.get("kwargs") or {}).get("task_id") == task_id
        ]
        return bool(found)

    wait_until(look, timeout_s=15, message="the round among the active tasks")
    return found[0]


def _celery_control(redis_url: str, *args: str) -> str:
    env = {**os.environ, **e2e_env(redis_url)}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_app", "control", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_cancel_through_the_api_then_next_stops_the_round_and_keeps_the_schedule(
    stack: Any, dispatcher: TaskDispatcher, redis_url: str
) -> None:
    """POST /cancel: cancelled (actor and note recorded), the task pending at its next slot."""
    s = stack(workers=1, beats=1)
    task_id = await _stuck_round(s, dispatcher, "acct-api-next")
    async with serve(create_app(settings_of(e2e_env(redis_url)))) as client:
        response = await client.post(f"/api/v1/tasks/{task_id}/cancel", json={"note": "卡住"})
    assert response.status_code == 200, response.text
    record = await _cancelled_then_quiet(s, dispatcher, task_id)
    assert (record["cancelled_by"], record["note"]) == ("anonymous", "卡住")
    assert s.view.task(task_id).status == "pending"
    await _run_now_starts_at_once(s, dispatcher, task_id)


async def test_cancel_through_the_api_then_pause_stops_the_round_and_pauses(
    stack: Any, dispatcher: TaskDispatcher, redis_url: str
) -> None:
    """POST /cancel with then=pause: cancelled, the task paused; resumed, it runs at once."""
    s = stack(workers=1, beats=1)
    task_id = await _stuck_round(s, dispatcher, "acct-api-pause")
    async with serve(create_app(settings_of(e2e_env(redis_url)))) as client:
        response = await client.post(f"/api/v1/tasks/{task_id}/cancel", json={"then": "pause"})
    assert response.json()["status"] == "paused"
    await _cancelled_then_quiet(s, dispatcher, task_id)
    assert s.view.task(task_id).status == "paused"
    await _run_now_starts_at_once(s, dispatcher, task_id)


async def test_celery_control_terminate_cancels_the_round_instead_of_killing_it(
    stack: Any, dispatcher: TaskDispatcher, redis_url: str
) -> None:
    """`celery control terminate SIGTERM <id>`: the pool process lives, the round is
    cancelled (actor: the command), never lost or rerun."""
    s = stack(workers=1, beats=1)
    task_id = await _stuck_round(s, dispatcher, "acct-terminate")
    pid = s.view.probe_starts()[0]["pid"]
    message_id = _round_message_id(_celery_app(redis_url), task_id)
    _celery_control(redis_url, "terminate", "SIGTERM", message_id)
    record = await _cancelled_then_quiet(s, dispatcher, task_id)
    assert record["cancelled_by"] == "celery control terminate SIGTERM"
    await _run_now_starts_at_once(s, dispatcher, task_id)
    assert s.view.probe_starts()[-1]["pid"] == pid  # the same pool process ran the next one


async def test_celery_control_revoke_of_a_running_round_cancels_it(
    stack: Any, dispatcher: TaskDispatcher, redis_url: str
) -> None:
    """A plain `celery control revoke <id>` of a running round stops it too (it used to do
    nothing)."""
    s = stack(workers=1, beats=1)
    task_id = await _stuck_round(s, dispatcher, "acct-revoke")
    message_id = _round_message_id(_celery_app(redis_url), task_id)
    _celery_control(redis_url, "revoke", message_id)
    record = await _cancelled_then_quiet(s, dispatcher, task_id)
    assert record["cancelled_by"] == "celery control revoke"
    await _run_now_starts_at_once(s, dispatcher, task_id)


async def test_cancel_of_an_async_round_cancels_its_coroutine_mid_await(
    stack: Any, dispatcher: TaskDispatcher
) -> None:
    """An async handler awaiting gets CancelledError at its await, its finally runs, and the
    round is cancelled like a plain one."""
    s = stack(workers=1, beats=1)
    task_id = await _stuck_round(s, dispatcher, "acct-async", task_type="probe_async")
    await dispatcher.cancel_round(task_id)
    await _cancelled_then_quiet(s, dispatcher, task_id, interrupt="CancelledError")
    assert [x["task_id"] for x in s.view.probe_finally()] == [task_id]
