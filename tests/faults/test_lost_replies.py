"""Redis unreachable around a write: every write lands exactly once (in-process, real Redis).

The nastiest case is a reply lost after EXEC: Redis applied the transaction, the client
saw its connection drop (redis-py reports it as a WatchError while WATCHing) and retries.
A retry must recognise its own write, not apply it again or report a false error.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.domain.exceptions import TaskNotFoundError
from taskdispatch.domain.models import Task
from taskdispatch.engine.handlers import RunContext
from taskdispatch.service.consistency import check_consistency
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from tests.support.probes import add_probe_task
from tests.support.proxy import FlakyProxy
from tests.support.runner import message_for, runner_for

KEYS = Keys("td:")


def _dispatcher(url: str) -> TaskDispatcher:
    return TaskDispatcher(Settings(redis_url=url, key_prefix="td:"), task_types={"probe", "noop"})


async def _history(url: str, task_id: str) -> list[str]:
    async with _dispatcher(url) as d:
        return [r.outcome for r in await d.runs(task_id)]


async def _assert_clean(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        assert await check_consistency(client, KEYS) == []
    finally:
        await client.aclose()


async def _new_task(url: str, account: str, **fields: Any) -> str:
    async with _dispatcher(url) as d:
        return await add_probe_task(d, account, **fields)


async def test_round_final_write_reply_lost_records_outcome_exactly_once(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """EXEC of the final write applied but its reply lost: round_num +1 and one ok record."""
    task_id = await _new_task(redis_url, "acct-lost-finish")

    def handler(ctx: RunContext) -> str:
        proxy.lose_next_exec_reply()  # the next transaction is the round's final write
        return "done"

    runner, client = runner_for(proxy.url, handler)
    before = message_for(client, task_id)
    summary = runner.run(before)

    assert proxy.exec_replies_lost == 1
    assert summary["outcome"] == "ok"
    task = Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert (task.round_num, task.status, task.run_id) == (1, "pending", None)
    assert await _history(redis_url, task_id) == ["ok"]
    assert client.zrange(KEYS.running(), 0, -1) == []
    assert not client.exists(KEYS.lock("acct-lost-finish"))
    await _assert_clean(redis_url)


async def test_round_start_reply_lost_still_runs_the_round_once(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """EXEC of the round's start applied but its reply lost: the round runs, nothing is lost."""
    task_id = await _new_task(redis_url, "acct-lost-start")
    calls: list[int] = []
    runner, client = runner_for(proxy.url, lambda ctx: calls.append(ctx.round_num))

    proxy.lose_next_exec_reply()  # the first transaction of a round marks it running
    summary = runner.run(message_for(client, task_id))

    assert proxy.exec_replies_lost == 1
    assert summary["outcome"] == "ok", summary
    assert calls == [1]
    task = Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert (task.round_num, task.status, task.run_id) == (1, "pending", None)
    assert await _history(redis_url, task_id) == ["ok"]
    assert client.zrange(KEYS.running(), 0, -1) == []
    await _assert_clean(redis_url)


async def test_round_final_write_while_redis_unreachable_lands_once_it_returns(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """Redis unreachable for ~1.5 s at the end of a round: the outcome lands once, after."""
    task_id = await _new_task(redis_url, "acct-partition")
    back = threading.Event()

    def handler(ctx: RunContext) -> str:
        proxy.block()
        threading.Timer(1.5, lambda: (proxy.unblock(), back.set())).start()
        return "done"

    runner, client = runner_for(proxy.url, handler)
    started = time.monotonic()
    summary = runner.run(message_for(client, task_id))

    assert back.is_set(), "the round ended before Redis was reachable again"
    assert summary["outcome"] == "ok"
    assert time.monotonic() - started < 10
    task = Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert (task.round_num, task.status, task.run_id) == (1, "pending", None)
    assert await _history(redis_url, task_id) == ["ok"]
    await _assert_clean(redis_url)


async def test_round_final_write_across_redis_restart_lands_once(
    aof_redis: EmbeddedRedis,
) -> None:
    """Redis shut down (AOF) during the handler and started again: one ok record, +1 round."""
    task_id = await _new_task(aof_redis.url, "acct-restart")
    restarted = threading.Event()

    def restart_later() -> None:
        time.sleep(1.0)
        aof_redis.start()
        restarted.set()

    def handler(ctx: RunContext) -> str:
        aof_redis.stop()  # SHUTDOWN: the AOF is fsynced, the running state survives
        threading.Thread(target=restart_later, daemon=True).start()
        return "done"

    runner, client = runner_for(aof_redis.url, handler)
    summary = runner.run(message_for(client, task_id))

    assert restarted.is_set()
    assert summary["outcome"] == "ok"
    task = Task.from_hash(client.hgetall(KEYS.task(task_id)), task_id=task_id)
    assert (task.round_num, task.status, task.run_id) == (1, "pending", None)
    assert await _history(aof_redis.url, task_id) == ["ok"]
    await _assert_clean(aof_redis.url)


async def test_reorder_reply_lost_moves_the_slot_exactly_once(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """A reorder whose EXEC reply is lost is not applied a second time by the retry."""
    task_id = await _new_task(redis_url, "acct-reorder", interval=3600)
    async with _dispatcher(proxy.url) as d:
        before = (await d.get_task(task_id)).next_ms
        assert before is not None
        proxy.lose_next_exec_reply()
        after = await d.reorder_task(task_id, 600)
        stored = await d.get_task(task_id)
    assert proxy.exec_replies_lost == 1
    assert after.next_ms == stored.next_ms == before + 600_000
    await _assert_clean(redis_url)


async def test_pause_resume_delete_reply_lost_report_success(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """Lost EXEC replies of pause, resume and delete: each reports what actually happened."""
    task_id = await _new_task(redis_url, "acct-ops", interval=3600)
    async with _dispatcher(proxy.url) as d:
        proxy.lose_next_exec_reply()
        assert (await d.pause_task(task_id)).status == "paused"
        proxy.lose_next_exec_reply()
        assert (await d.resume_task(task_id)).status == "pending"
        proxy.lose_next_exec_reply()
        await d.delete_task(task_id)
        assert proxy.exec_replies_lost == 3
        try:
            await d.get_task(task_id)
        except TaskNotFoundError:
            pass
        else:
            raise AssertionError("the task survived its delete")
    await _assert_clean(redis_url)


async def test_create_reply_lost_reports_the_created_task(
    redis_url: str, proxy: FlakyProxy
) -> None:
    """A create whose EXEC reply is lost returns the task, not 'account already has a task'."""
    async with _dispatcher(proxy.url) as d:
        proxy.lose_next_exec_reply()
        task_id = await add_probe_task(d, "acct-create")
        assert proxy.exec_replies_lost == 1
        assert [t.task_id for t in await d.account_tasks("acct-create")] == [task_id]
        total, _ = await d.list_tasks()
    assert total == 1
    await _assert_clean(redis_url)


def test_proxy_blocked_refuses_connections(proxy: FlakyProxy) -> None:
    """Sanity of the fault injector: blocked means unreachable, unblocked means reachable."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(proxy.url, socket_timeout=2)
    assert client.ping()
    proxy.block()
    try:
        client.ping()
    except RedisError:
        pass
    else:
        raise AssertionError("a blocked proxy answered")
    proxy.unblock()
    assert client.ping()
    client.close()
