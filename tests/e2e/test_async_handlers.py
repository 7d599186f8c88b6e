"""Async handlers under the default prefork pool, results that are not JSON, and task types
the API learns from its workers (real worker, beat and API processes)."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from tests.support.api import ApiProcess, create_body
from tests.support.probes import add_probe_task, wait_until
from tests.support.stack import STOP_TIMEOUT_S, e2e_env

pytestmark = pytest.mark.e2e


async def test_async_handler_rounds_run_in_a_pool_process_and_record_their_result(
    stack, dispatcher
):
    """Rounds of an `async def` handler run in a prefork pool process (not the worker's main
    process), run to the end of their await, and are recorded ok with what they returned."""
    s = stack(workers=1, beats=1, concurrency=1)
    task_id = await add_probe_task(dispatcher, "acct-async", sleep_s=0.2, task_type="probe_async")

    wait_until(lambda: len(s.view.runs(task_id, "ok")) >= 3, timeout_s=20, message="3 rounds")
    ok = s.view.runs(task_id, "ok")
    pool = {p.pid for p in s.workers[0].group()} - {s.workers[0].pid}
    assert {r["result"]["pid"] for r in ok} <= pool, (ok, pool)
    assert all(r["result"]["slept_s"] == 0.2 for r in ok)
    assert s.view.runs(task_id, "failed") == []
    assert s.view.probe_interrupts() == []
    ended = {(x["task_id"], x["round_num"]) for x in s.view.probe_rounds()}
    assert {(task_id, r["round_num"]) for r in ok} <= ended


async def test_async_handler_rounds_of_one_pool_process_share_its_event_loop(stack, dispatcher):
    """The event loop of a pool process is made once and kept: its rounds count on, on it."""
    s = stack(workers=1, beats=1, concurrency=1)
    task_id = await add_probe_task(dispatcher, "acct-loop", task_type="probe_async")

    wait_until(lambda: len(s.view.runs(task_id, "ok")) >= 3, timeout_s=20, message="3 rounds")
    results = [r["result"] for r in s.view.runs(task_id, "ok")]
    assert len({r["pid"] for r in results}) == 1, results
    assert [r["rounds_on_loop"] for r in results] == list(range(1, len(results) + 1))


async def test_sync_handler_returning_a_coroutine_fails_its_round_naming_async_def(
    stack, dispatcher
):
    """A plain function that returns a coroutine: the round is failed (never ok) with an
    error naming the fix, and the worker logs no "never awaited" warning."""
    s = stack(workers=1, beats=1)
    task_id = await add_probe_task(dispatcher, "acct-mistake", task_type="returns_coroutine")

    [failed, *_] = wait_until(
        lambda: s.view.runs(task_id, "failed"), timeout_s=20, message="the failed round"
    )
    assert "`async def`" in failed["error"], failed
    assert failed["result"] is None
    assert s.view.runs(task_id, "ok") == []
    assert "never awaited" not in s.workers[0].log()


async def test_async_handler_past_its_soft_time_limit_is_cancelled_and_its_round_failed(
    stack, dispatcher
):
    """Celery's soft time limit cancels the coroutine (CancelledError at its await, its
    finally runs) and fails the round with SoftTimeLimitExceeded."""
    s = stack(workers=1, beats=1, env={"TASKDISPATCH_ROUND_TIME_LIMIT_S": "1.5"})
    task_id = await add_probe_task(dispatcher, "acct-slow", sleep_s=30.0, task_type="probe_async")

    [failed, *_] = wait_until(
        lambda: s.view.runs(task_id, "failed"), timeout_s=20, message="the failed round"
    )
    assert "SoftTimeLimitExceeded" in failed["error"], failed
    [interrupt, *_] = s.view.probe_interrupts()
    assert (interrupt["by"], interrupt["message"]) == ("CancelledError", "SoftTimeLimitExceeded()")
    assert interrupt["round_num"] == failed["round_num"]
    cleaned = {x["round_num"] for x in s.view.probe_finally()}
    assert failed["round_num"] in cleaned
    assert s.workers[0].alive()


def test_task_type_announced_only_by_a_live_worker_is_accepted_while_it_lives(
    stack, redis_url, tmp_path
):
    """An API that knows only the built-in types accepts a type once a worker that has it
    starts (no API restart), and refuses it again, listing the known types, once no live
    worker announces it."""
    env = e2e_env(redis_url, {"TASKDISPATCH_HANDLERS": ""})
    accounts = (f"acct-{n}" for n in itertools.count())
    with ApiProcess(env, tmp_path / "api.log") as api, httpx.Client(base_url=api.base_url) as http:

        def create(task_type: str) -> httpx.Response:
            body = create_body(next(accounts), task_type=task_type, interval=1)
            return http.post("/api/v1/tasks/", json=body, timeout=5)

        before = create("probe_async")
        assert before.status_code == 400, before.text
        assert "probe_async" not in _known(before)

        s = stack(workers=1, beats=1)
        accepted = wait_until(
            lambda: (r := create("probe_async")).status_code == 200 and r,
            timeout_s=20,
            message="the worker's task type to be accepted",
        )
        task_id = accepted.json()["task_id"]
        wait_until(lambda: s.view.runs(task_id, "ok"), timeout_s=20, message="its first round")
        refused = create("nobody_has_it")
        assert refused.status_code == 400, refused.text
        assert {"probe_async", "xhs_type", "noop"} <= _known(refused)

        s.workers[0].terminate()
        s.workers[0].wait_stopped(time.monotonic() + STOP_TIMEOUT_S)
        gone = wait_until(
            lambda: (r := create("probe_async")).status_code == 400 and r,
            timeout_s=30,
            message="the type to be refused once its worker is gone",
        )
        assert "probe_async" not in _known(gone)
        assert {"xhs_type", "noop"} <= _known(gone)


def test_api_configured_with_a_handler_it_cannot_import_starts_and_accepts_the_type(
    redis_url, tmp_path
):
    """The API reads task types from the handler setting's names: it imports no handler code,
    so a module only the workers have does not stop it."""
    env = e2e_env(redis_url, {"TASKDISPATCH_HANDLERS": "scout=agents_only_on_workers.scout:run"})
    with ApiProcess(env, tmp_path / "api.log") as api:
        body = create_body("acct-scout", task_type="scout")
        response = httpx.post(f"{api.base_url}/api/v1/tasks/", json=body, timeout=5)
    assert response.status_code == 200, response.text


def _known(response: httpx.Response) -> set[str]:
    """The known task types a 400 for an unknown one lists (after its last colon)."""
    return {name.strip() for name in response.json()["error"].rsplit(":", 1)[1].split(",")}


def test_worker_announces_its_task_types_again_after_redis_lost_them(stack):
    """A Redis that lost the announcements while the worker lived (a restart without
    persistence) has them back within a few heartbeats, without restarting the worker."""
    s = stack(workers=1, beats=1)
    announced = s.keys.worker_handlers()
    wait_until(lambda: s.view.r.hget(announced, s.node(0)), 15, message="the announcement")
    s.view.r.delete(announced, s.keys.worker_queues())
    wait_until(
        lambda: (
            s.view.r.hget(announced, s.node(0)) and s.view.r.hget(s.keys.worker_queues(), s.node(0))
        ),
        10,
        message="the announcement again",
    )
    assert "probe_async" in s.view.r.hget(announced, s.node(0))
