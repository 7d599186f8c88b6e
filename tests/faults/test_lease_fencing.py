"""A round whose worker cannot renew its lease stops itself before the lease can expire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from taskdispatch.domain.models import Task
from taskdispatch.engine.lease import EXIT_FENCED, HandlerGuard, LeaseLost
from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task, wait_until
from tests.support.proxy import FlakyProxy
from tests.support.runner import message_for, runner_for

KEYS = Keys("td:")
TTL_S = 2.0


async def _due_task(url: str, account: str) -> str:
    async with TaskDispatcher(Settings(redis_url=url, key_prefix="td:"), task_types={"probe"}) as d:
        task_id = await add_probe_task(d, account, interval=3600)
        await d.run_now(task_id)
        return task_id


def _cut_off(proxy: FlakyProxy, *, for_s: float) -> float:
    """Partition the proxy now, heal it `for_s` later; returns the moment of the cut
    (monotonic). Call it once the round's handler runs: a cut timed from the round's call
    raced the round's own start under load (its first command went into the partition)."""
    cut_s = time.monotonic()
    proxy.partition()
    heal = threading.Timer(for_s, proxy.heal)
    heal.daemon = True
    heal.start()
    return cut_s


async def test_round_partitioned_from_redis_stops_before_its_lease_expires(redis_url, proxy):
    """Cut off for 2x the TTL mid-round: the handler is interrupted while the lease still
    holds, and the round is recorded lost by its own worker once Redis is back."""
    task_id = await _due_task(redis_url, "acct-fenced")
    direct = redis.Redis.from_url(redis_url, decode_responses=True)
    seen: dict[str, Any] = {}

    def handler(ctx: Any) -> None:
        seen["token"] = ctx.fencing_token
        seen["cut"] = _cut_off(proxy, for_s=2 * TTL_S)
        try:
            time.sleep(30)
        finally:
            # Read directly, past the partition: is the lease still ours as the handler ends?
            seen["lease_left_ms"] = direct.pttl(KEYS.lock("acct-fenced"))
            seen["ended"] = time.monotonic()

    runner, client = runner_for(proxy.url, handler, lease_ttl_s=TTL_S)
    msg = message_for(direct, task_id)
    summary = runner.run(msg)

    assert summary["outcome"] == "lost", summary
    assert seen["lease_left_ms"] > 0, "the handler outlived its lease"
    # The last renewal Redis applied came before the cut: the lease ends within a TTL of it.
    assert seen["ended"] - seen["cut"] < TTL_S, "the handler was not stopped in time"
    assert seen["token"] == msg.fence
    [record] = [r for r in _runs(direct, task_id) if r["outcome"] == "lost"]
    assert record["reason"] == "lease_unrenewable"
    assert "could not be renewed" in record["error"]
    task = Task.from_hash(direct.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert task.status == "pending" and task.run_id is None
    assert task.fence > msg.fence
    assert not direct.exists(KEYS.lock("acct-fenced")), "the lease was not released"
    async with TaskDispatcher(Settings(redis_url=redis_url, key_prefix="td:")) as d:
        assert await check_consistency(d.redis, d.keys) == []
    client.close()
    direct.close()


def _runs(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange(KEYS.runs(task_id), 0, -1)]


async def test_round_whose_lease_renewals_succeed_is_not_fenced(redis_url, proxy):
    """A round three times longer than the TTL, with Redis reachable, ends ok."""
    task_id = await _due_task(redis_url, "acct-renewed")
    runner, client = runner_for(proxy.url, lambda ctx: time.sleep(3 * TTL_S), lease_ttl_s=TTL_S)
    direct = redis.Redis.from_url(redis_url, decode_responses=True)
    assert runner.run(message_for(direct, task_id))["outcome"] == "ok"
    client.close()
    direct.close()


def test_guard_interrupts_a_handler_in_another_thread() -> None:
    """Outside the main thread (threads pool) the interrupt arrives as an async exception,
    and the guard keeps the reason."""
    outcome: list[str] = []
    running = threading.Event()
    guards: list[HandlerGuard] = []

    def handler() -> None:
        running.set()
        for _ in range(500):
            time.sleep(0.01)

    def body() -> None:
        guard = HandlerGuard()
        guards.append(guard)
        with guard.installed():
            try:
                guard.call(handler)
                outcome.append("finished")
            except LeaseLost:
                outcome.append(guard.reason or "")

    thread = threading.Thread(target=body)
    thread.start()
    # Interrupt once the handler runs, never before the call (which raises on its own).
    assert running.wait(30), "the handler never started"
    guards[0].interrupt("stop now")
    thread.join(timeout=5)
    assert outcome == ["stop now"]


def test_guard_after_the_handler_returned_raises_nothing() -> None:
    """An interrupt that comes once the handler is done is ignored."""
    guard = HandlerGuard()
    with guard.installed():
        assert guard.call(lambda: 42) == 42
        guard.interrupt("too late")
        time.sleep(0.05)  # a signal would be delivered here


# Set by the child's handler: its round started, so the partition can only hit the handler.
_STUBBORN_STARTED = "test:stubborn-started"
_STUBBORN = """
import sys
from taskdispatch.engine import lease
from tests.faults.test_lease_fencing import stubborn_round
lease.in_pool_process = True
stubborn_round(sys.argv[1], sys.argv[2])
"""


def stubborn_round(proxy_url: str, direct_url: str) -> None:
    """(In a child process) run a round whose handler swallows LeaseLost and keeps going."""
    direct = redis.Redis.from_url(direct_url, decode_responses=True)
    task_id = direct.get(KEYS.account("acct-stubborn"))

    def handler(ctx: Any) -> None:
        direct.set(_STUBBORN_STARTED, os.getpid())
        while True:
            try:
                time.sleep(30)
            except BaseException:  # the point: a handler that will not stop
                direct.rpush("test:swallowed", direct.pttl(KEYS.lock("acct-stubborn")))

    runner, _ = runner_for(proxy_url, handler, lease_ttl_s=TTL_S)
    runner.run(message_for(direct, task_id))


async def test_pool_process_whose_handler_ignores_the_fence_exits_before_expiry(redis_url, proxy):
    """A handler that swallows LeaseLost: its pool process exits while the lease still holds."""
    await _due_task(redis_url, "acct-stubborn")
    direct = redis.Redis.from_url(redis_url, decode_responses=True)
    lock = KEYS.lock("acct-stubborn")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.Popen([sys.executable, "-c", _STUBBORN, proxy.url, redis_url], cwd=root)
    try:
        # The child's import alone may take longer than any fixed delay under load: cut once
        # its handler runs.
        wait_until(
            lambda: direct.exists(_STUBBORN_STARTED) or child.poll() is not None,
            timeout_s=60,
            interval_s=0.02,
            message="the child's round to start",
        )
        assert child.poll() is None, f"the child ended before the cut: {child.returncode}"
        _cut_off(proxy, for_s=2 * TTL_S)
        # Lease first, process second: an expired lease seen while the process still lives
        # is a fence that came too late.
        alive_after_expiry = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            expired = direct.pttl(lock) == -2 and direct.llen("test:swallowed") > 0
            if child.poll() is not None:
                break
            alive_after_expiry |= expired
            time.sleep(0.01)
        assert child.wait(timeout=5) == EXIT_FENCED
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert direct.llen("test:swallowed") == 1, "the handler was not interrupted first"
    assert not alive_after_expiry, "the pool process outlived its lease"
    direct.close()
