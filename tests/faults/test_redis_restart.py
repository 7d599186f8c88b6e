"""Redis shut down (AOF on) and started again under a running worker, beat and API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from tests.support.api import ApiProcess, error_body_ok
from tests.support.probes import duplicate_slots, holds_for, now_ms, overlaps_by_history, wait_until
from tests.support.stack import Stack, e2e_env

pytestmark = pytest.mark.e2e

TASKS = 10
# Longer than the outage: a round in progress keeps its lease through the restart.
LEASE_TTL_S = "10"
DEFINITION = (
    "task_id",
    "account_id",
    "account_name",
    "task_type",
    "sys_type",
    "interval",
    "valid_time_range",
    "task_end_time",
    "timezone",
    "created_at",
    "kwargs",
)


@pytest.fixture
def redis_url(aof_redis: EmbeddedRedis) -> str:
    """This module's stack, dispatcher and API use the restartable AOF Redis."""
    return aof_redis.url


@pytest.fixture
def aof_stack(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Worker and beat over the AOF Redis (the e2e `stack` fixture counts the restarted
    redis-server among leftover children, so this one is stopped explicitly)."""
    log_dir = tmp_path / "stack"
    log_dir.mkdir()
    s = Stack(redis_url, e2e_env(redis_url, {"TASKDISPATCH_LEASE_TTL_S": LEASE_TTL_S}), log_dir)
    try:
        s.start(workers=1, beats=1, concurrency=2, queues="celery")
        yield s
    finally:
        failed = getattr(getattr(request.node, "rep_call", None), "failed", True)
        try:
            s.kill()
        finally:
            if failed:
                print(f"\n===== logs of {log_dir} =====\n{s.tails()}")


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    env = e2e_env(redis_url, {"TASKDISPATCH_LEASE_TTL_S": LEASE_TTL_S})
    with ApiProcess(env, tmp_path / "api.log") as process:
        yield process


def _definitions(client: httpx.Client, ids: list[str]) -> dict[str, dict]:
    out = {}
    for task_id in ids:
        response = client.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        out[task_id] = {k: response.json().get(k) for k in DEFINITION}
    return out


def test_redis_restart_loses_no_task_and_rounds_resume(aof_stack, aof_redis, api):
    """SHUTDOWN + start on the same port/dir: 503 while down, same tasks, rounds resume."""
    s = aof_stack
    client = httpx.Client(base_url=api.base_url, timeout=15)
    ids = []
    for i in range(TASKS):
        body = {
            "sys_type": "mac_intel",
            "xhs_account_id": f"acct-{i}",
            "xhs_account_name": f"name-{i}",
            "task_type": "probe",
            "interval": 1,
            "valid_time_range": [0, 24],
            "kwargs": {"sleep_s": 0.2},
        }
        response = client.post("/api/v1/tasks/", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    wait_until(
        lambda: all(len(s.view.runs(t, "ok")) >= 2 for t in ids),
        timeout_s=30,
        interval_s=0.25,
        message="two rounds of every task",
    )
    before = _definitions(client, ids)
    pids = [p.pid for p in s.procs()] + [api.popen.pid]

    aof_redis.stop()  # SHUTDOWN: the AOF is fsynced
    down_ms = now_ms()
    for method, url in [
        ("GET", "/api/v1/tasks/"),
        ("GET", f"/api/v1/tasks/{ids[0]}"),
        ("GET", "/api/v1/dispatcher/status"),
        ("POST", f"/api/v1/tasks/{ids[0]}/pause"),
    ]:
        response = client.request(method, url)
        assert response.status_code == 503, (method, url, response.text)
        body = response.json()
        assert error_body_ok(body), body
        assert "Redis" in body["error"] and "Traceback" not in response.text
        assert response.elapsed.total_seconds() < 5, (url, response.elapsed)
    assert client.get("/api/v1/health").status_code == 200
    # Nobody crashes while Redis is away (the processes keep retrying by themselves).
    holds_for(
        lambda: all(p.alive() for p in s.procs()) and api.alive(),
        duration_s=2.0,
        message="every process alive during the outage",
    )

    aof_redis.start()  # same port, same data dir
    up_ms = now_ms()
    resumed = wait_until(
        lambda: (
            all(any(r["started_ms"] > up_ms for r in s.view.runs(t, "ok")) for t in ids)
            and [
                min(r["started_ms"] for r in s.view.runs(t, "ok") if r["started_ms"] > up_ms)
                for t in ids
            ]
        ),
        timeout_s=30,
        interval_s=0.25,
        message="a round of every task after the restart",
    )
    assert [p.pid for p in s.procs()] + [api.popen.pid] == pids, "a process was restarted"
    assert all(p.alive() for p in s.procs()) and api.alive()
    assert client.get("/api/v1/tasks/").json()["total"] == TASKS
    assert _definitions(client, ids) == before

    client.post("/api/v1/dispatcher/stop")
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=20, message="quiescence")
    check = client.get("/api/v1/dispatcher/check").json()
    assert check == {"consistent": True, "problems": []}, check
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    bad = overlaps_by_history(s.view, starts, rounds)
    assert bad == [], json.dumps(
        {"overlaps": bad, "runs": {a["task_id"]: s.view.runs(a["task_id"]) for a, _ in bad}},
        indent=1,
    )
    assert "Traceback" not in api.log()
    client.close()
    print(
        f"\noutage: {up_ms - down_ms} ms; restart -> first round of every task: "
        f"{max(resumed) - up_ms} ms (slowest), {min(resumed) - up_ms} ms (fastest)"
    )


RESTARTS = 5


def test_redis_restarted_five_times_every_task_runs_again_without_overlap_or_duplicate(
    aof_stack, aof_redis, api
):
    """5 SHUTDOWN + start cycles within 15 s while rounds run: every task runs again
    within 30 s of the last restart, no two rounds of an account overlap, no slot twice."""
    s = aof_stack
    client = httpx.Client(base_url=api.base_url, timeout=15)
    ids = []
    for i in range(TASKS):
        body = {
            "sys_type": "mac_intel",
            "xhs_account_id": f"acct-{i}",
            "xhs_account_name": f"name-{i}",
            "task_type": "probe",
            "interval": 1,
            "valid_time_range": [0, 24],
            "kwargs": {"sleep_s": 0.3},
        }
        response = client.post("/api/v1/tasks/", json=body)
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    wait_until(
        lambda: all(s.view.runs(t, "ok") for t in ids),
        timeout_s=30,
        interval_s=0.25,
        message="a round of every task",
    )
    pids = [p.pid for p in s.procs()]
    began = time.monotonic()
    for n in range(RESTARTS):
        aof_redis.stop()
        time.sleep(1.0)
        aof_redis.start()
        time.sleep(1.0 + n * 0.25)  # up 1-2 s between outages: rounds start in between
    assert time.monotonic() - began <= 15
    up_ms = now_ms()
    resumed = wait_until(
        lambda: (
            all(any(r["started_ms"] > up_ms for r in s.view.runs(t, "ok")) for t in ids)
            and [
                min(r["started_ms"] for r in s.view.runs(t, "ok") if r["started_ms"] > up_ms)
                for t in ids
            ]
        ),
        timeout_s=30,
        interval_s=0.25,
        message="a round of every task after the last restart",
    )
    assert [p.pid for p in s.procs()] == pids, "a process was restarted"
    # The API's first request after the restarts: it must reconnect, not answer 503.
    stopped = client.post("/api/v1/dispatcher/stop")
    assert stopped.status_code == 200, stopped.text
    wait_until(lambda: all(s.view.is_idle(t) for t in ids), timeout_s=30, message="quiescence")
    starts, rounds = s.view.probe_starts(), s.view.probe_rounds()
    bad = overlaps_by_history(s.view, starts, rounds)
    assert bad == [], json.dumps(bad, indent=1)
    assert duplicate_slots(starts) == []
    check = client.get("/api/v1/dispatcher/check").json()
    assert check == {"consistent": True, "problems": []}, check
    client.close()
    print(
        f"\n{RESTARTS} restarts in {time.monotonic() - began:.1f} s; last restart -> first "
        f"round of every task: {max(resumed) - up_ms} ms (slowest)"
    )
