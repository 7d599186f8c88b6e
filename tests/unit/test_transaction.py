"""Specification of taskdispatch.store.transaction: one optimistic transaction, two flavours.

Real Redis (the session's private server), reached directly or through the TCP proxy that
loses EXEC replies. Each behaviour is checked in the synchronous and the asyncio flavour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from taskdispatch.domain.exceptions import AccountTaskExistsError, TransactionContendedError
from taskdispatch.domain.models import Task
from taskdispatch.store.keys import Keys
from taskdispatch.store.transaction import MAX_ATTEMPTS, Change, Read, Result, atransact, transact
from taskdispatch.store.write import WRITE_ID_FIELD
from tests.support.proxy import FlakyProxy
from tests.support.tasks import task_record

KEYS = Keys("td:")

Run = Callable[..., Result]


def _task(task_id: str = "t1", account: str = "a1", **changes: Any) -> Task:
    values: dict[str, Any] = {
        "task_id": task_id,
        "account_id": account,
        "account_name": account,
        "task_type": "noop",
        "interval_s": 60,
        "created_ms": 1_000,
        "next_ms": 61_000,
        **changes,
    }
    return task_record(**values)


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[..., Result]]:
    """`run(plan, task_id=..., account_id=..., url=...)` in the parametrized flavour."""
    import asyncio

    def sync(plan: Any, *, task_id: str = "t1", url: str = redis_url, **kw: Any) -> Result:
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            return transact(client, KEYS, task_id, plan, **kw)
        finally:
            client.close()

    def async_(plan: Any, *, task_id: str = "t1", url: str = redis_url, **kw: Any) -> Result:
        async def go() -> Result:
            client = redis.asyncio.Redis.from_url(url, decode_responses=True)
            try:
                return await atransact(client, KEYS, task_id, plan, **kw)
            finally:
                await client.aclose()

        return asyncio.run(go())

    yield sync if request.param == "sync" else async_


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _create(run: Run) -> Result:
    def plan(read: Read) -> Change:
        if read.account_task_id is not None:
            raise AccountTaskExistsError("a1", read.account_task_id)
        return Change(_task())

    return run(plan, account_id="a1")


def test_transact_create_writes_hash_indexes_and_tag(run: Run, raw: redis.Redis) -> None:
    """A create writes the hash (tagged with its write id), the account and the indexes."""
    result = _create(run)
    assert (result.old, result.wrote) == (None, True)
    stored = raw.hgetall(KEYS.task("t1"))
    assert stored.pop(WRITE_ID_FIELD)
    assert Task.from_hash(stored, task_id="t1") == _task()
    assert raw.get(KEYS.account("a1")) == "t1"
    assert raw.zscore(KEYS.due(), "t1") == 61_000


def test_transact_create_of_a_bound_account_shows_the_binding(run: Run) -> None:
    """With account_id, the plan sees which task the account is bound to."""
    _create(run)
    with pytest.raises(AccountTaskExistsError):
        _create(run)


def test_transact_plan_returning_none_writes_nothing(run: Run, raw: redis.Redis) -> None:
    """No change: nothing written, the record as read is returned."""
    _create(run)
    before = raw.hgetall(KEYS.task("t1"))
    result = run(lambda read: None)
    assert result.wrote is False and result.old == result.new == Task.from_hash(
        before, task_id="t1"
    )
    assert raw.hgetall(KEYS.task("t1")) == before


def test_transact_extra_commands_join_the_same_exec(run: Run, raw: redis.Redis) -> None:
    """The plan's extra writes land with the task's, in one MULTI."""
    _create(run)
    result = run(
        lambda read: Change(
            read.task.evolve(round_num=1),
            lambda pipe: pipe.set("extra", "1"),  # type: ignore[union-attr]
        )
    )
    assert result.wrote and raw.get("extra") == "1"
    assert raw.hget(KEYS.task("t1"), "round_num") == "1"


def test_transact_concurrent_change_replans_on_the_fresh_record(run: Run, raw: redis.Redis) -> None:
    """Another writer between the read and the EXEC: the plan runs again on its result."""
    _create(run)
    seen: list[int] = []

    def plan(read: Read) -> Change:
        assert read.task is not None
        seen.append(read.task.round_num)
        if len(seen) == 1:
            raw.hset(KEYS.task("t1"), "round_num", "7")  # lands after WATCH, before EXEC
        return Change(read.task.evolve(round_num=read.task.round_num + 1))

    run(plan)
    assert seen == [0, 7]
    assert raw.hget(KEYS.task("t1"), "round_num") == "8"


def test_transact_changed_at_every_attempt_gives_up_with_transaction_contended(
    run: Run, raw: redis.Redis
) -> None:
    """A key changed between read and EXEC every time: MAX_ATTEMPTS plans, nothing written."""
    _create(run)
    seen: list[int] = []

    def plan(read: Read) -> Change:
        assert read.task is not None
        seen.append(1)
        raw.hincrby(KEYS.task("t1"), "round_num", 1)  # lands after WATCH, before EXEC
        return Change(read.task.evolve(account_name="never written"))

    with pytest.raises(TransactionContendedError) as caught:
        run(plan)
    assert len(seen) == caught.value.attempts == MAX_ATTEMPTS
    assert raw.hget(KEYS.task("t1"), "account_name") == "a1"


def test_transact_delete_removes_hash_and_every_index(run: Run, raw: redis.Redis) -> None:
    """A plan returning Change(None) deletes the task and its index entries."""
    _create(run)
    result = run(lambda read: Change(None))
    assert result.wrote and result.new is None
    assert not raw.exists(KEYS.task("t1"), KEYS.account("a1"))
    assert raw.zscore(KEYS.due(), "t1") is None


def test_transact_lost_exec_reply_is_recognised_not_applied_twice(
    run: Run, raw: redis.Redis, proxy: FlakyProxy
) -> None:
    """EXEC applied but its reply lost: the retry finds its own tag and returns, so a
    change that is not idempotent (a counter) is applied exactly once."""
    _create(run)

    def plan(read: Read) -> Change:
        assert read.task is not None
        return Change(read.task.evolve(round_num=read.task.round_num + 1))

    proxy.lose_next_exec_reply()
    result = run(plan, url=proxy.url)
    assert proxy.exec_replies_lost == 1
    assert result.wrote and result.new is not None and result.new.round_num == 1
    assert raw.hget(KEYS.task("t1"), "round_num") == "1"


def test_transact_lost_exec_reply_of_a_delete_is_recognised(
    run: Run, raw: redis.Redis, proxy: FlakyProxy
) -> None:
    """A delete whose reply was lost: the retry sees the task gone and reports the delete."""
    _create(run)

    def plan(read: Read) -> Change:
        if read.task is None:
            raise AssertionError("planned again after its own delete")
        return Change(None)

    proxy.lose_next_exec_reply()
    result = run(plan, url=proxy.url)
    assert result.wrote and result.new is None
    assert not raw.exists(KEYS.task("t1"))
