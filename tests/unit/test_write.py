"""Specification of taskdispatch.store.write.queue_task_write: a task change as Redis writes.

Pure store logic, so an in-process fakeredis (no Lua script runs here): each test queues one
change (old -> new) on a pipeline, executes it and reads what the store holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from taskdispatch.domain import lifecycle
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.store.keys import Keys
from taskdispatch.store.write import WRITE_ID_FIELD, new_write_id, queue_task_write, written_by

KEYS = Keys("tdunit:")
T0 = 1_767_837_600_000  # 2026-01-08T10:00:00+08:00
HOUR = 3_600_000

PENDING = TaskStatus.PENDING
RUNNING = TaskStatus.RUNNING
PAUSED = TaskStatus.PAUSED


def make_task(**overrides: Any) -> Task:
    """The task a create body makes at T0 (account_1, hourly, always in window, next run at
    T0 + 1 h, fence 0), with `overrides` applied."""
    body = {
        "sys_type": "mac_intel",
        "xhs_account_id": "account_1",
        "xhs_account_name": "账号1",
        "interval": 3600,
        "valid_time_range": [0, 24],
    }
    task = lifecycle.created(
        TaskSpec.model_validate(body),
        task_id="task-1",
        now_ms=T0,
        default_timezone="Asia/Shanghai",
        task_types={"xhs_type"},
    )
    return task.evolve(**overrides)


@pytest.fixture
def fake() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.close()


def write(fake: fakeredis.FakeRedis, old: Task | None, new: Task | None, **kw: Any) -> list[Any]:
    """Queue old -> new on a MULTI pipeline and execute it."""
    with fake.pipeline(transaction=True) as pipe:
        queue_task_write(pipe, KEYS, old, new, **kw)
        return list(pipe.execute())


def statuses(fake: fakeredis.FakeRedis, task_id: str = "task-1") -> list[str]:
    """The status indexes that hold the task."""
    return [s.value for s in TaskStatus if fake.zscore(KEYS.status(s.value), task_id) is not None]


def events(fake: fakeredis.FakeRedis) -> list[dict[str, Any]]:
    return [
        {"type": fields["type"], **json.loads(fields["data"])}
        for _, fields in fake.xrange(KEYS.events())
    ]


def test_write_create_stores_hash_account_indexes_due_and_a_wake_token(
    fake: fakeredis.FakeRedis,
) -> None:
    """A create writes the hash, binds the account, enters all/status/due and wakes a beat."""
    task = make_task()
    write(fake, None, task)
    assert fake.hgetall(KEYS.task("task-1")) == task.to_hash()
    assert fake.get(KEYS.account("account_1")) == "task-1"
    assert fake.zrange(KEYS.all_tasks(), 0, -1, withscores=True) == [("task-1", T0)]
    assert statuses(fake) == ["pending"]
    assert fake.zscore(KEYS.due(), "task-1") == T0 + HOUR
    assert fake.lrange(KEYS.wake(), 0, -1) == ["1"]


def test_write_with_a_write_id_tags_the_hash(fake: fakeredis.FakeRedis) -> None:
    """A write_id is stored in the hash, where written_by recognises it."""
    write(fake, None, make_task(), write_id="w-42")
    raw = fake.hgetall(KEYS.task("task-1"))
    assert raw[WRITE_ID_FIELD] == "w-42"
    assert written_by(raw, "w-42") and not written_by(raw, "w-43")


def test_write_status_change_moves_the_task_between_status_indexes(
    fake: fakeredis.FakeRedis,
) -> None:
    """pending -> running leaves the pending index and enters the running-status index."""
    old = make_task()
    write(fake, None, old)
    write(fake, old, old.evolve(status=RUNNING, run_id="r1"))
    assert statuses(fake) == ["running"]
    assert fake.zscore(KEYS.status("running"), "task-1") == T0


def test_write_task_no_longer_pending_leaves_the_due_index(fake: fakeredis.FakeRedis) -> None:
    """A task that is not pending (here running) is never in the due index."""
    old = make_task()
    write(fake, None, old)
    write(fake, old, old.evolve(status=RUNNING, run_id="r1"))
    assert fake.zscore(KEYS.due(), "task-1") is None


def test_write_unchanged_slot_and_fence_keep_a_beats_claim(fake: fakeredis.FakeRedis) -> None:
    """An edit that keeps next_ms and fence leaves the due score (a claim) and wakes no beat."""
    old = make_task()
    write(fake, None, old)
    claimed_until = T0 + HOUR + 30_000
    fake.zadd(KEYS.due(), {"task-1": claimed_until})
    fake.delete(KEYS.wake())
    write(fake, old, old.evolve(account_name="新名字", updated_ms=T0 + 1))
    assert fake.zscore(KEYS.due(), "task-1") == claimed_until
    assert fake.llen(KEYS.wake()) == 0


def test_write_new_fence_resets_the_claim_to_the_slot(fake: fakeredis.FakeRedis) -> None:
    """A new fence (same slot) replaces a beat's claim with the slot itself and wakes a beat."""
    old = make_task()
    write(fake, None, old)
    fake.zadd(KEYS.due(), {"task-1": T0 + HOUR + 30_000})
    fake.delete(KEYS.wake())
    write(fake, old, old.evolve(fence=old.fence + 1))
    assert fake.zscore(KEYS.due(), "task-1") == T0 + HOUR
    assert fake.lrange(KEYS.wake(), 0, -1) == ["1"]


def test_write_timed_pause_enters_the_resume_index(fake: fakeredis.FakeRedis) -> None:
    """A pause with an until is scored by it in the resume index."""
    old = make_task()
    write(fake, None, old)
    write(fake, old, old.evolve(status=PAUSED, fence=old.fence + 1, paused_until_ms=T0 + 2 * HOUR))
    assert fake.zscore(KEYS.resume(), "task-1") == T0 + 2 * HOUR


def test_write_resume_leaves_the_resume_index(fake: fakeredis.FakeRedis) -> None:
    """Ending a timed pause removes the task from the resume index."""
    paused = make_task(status=PAUSED, paused_until_ms=T0 + 2 * HOUR)
    write(fake, None, paused)
    write(fake, paused, paused.evolve(status=PENDING, fence=paused.fence + 1, paused_until_ms=None))
    assert fake.zscore(KEYS.resume(), "task-1") is None
    assert statuses(fake) == ["pending"]


def test_write_delete_removes_hash_history_account_and_every_index(
    fake: fakeredis.FakeRedis,
) -> None:
    """A delete leaves no key of the task and no entry of it in any index."""
    task = make_task(status=PAUSED, paused_until_ms=T0 + 2 * HOUR)
    write(fake, None, task)
    fake.lpush(KEYS.runs("task-1"), "{}")
    fake.zadd(KEYS.running(), {"task-1": T0})
    fake.zadd(KEYS.due(), {"task-1": T0})
    write(fake, task, None)
    assert not fake.exists(KEYS.task("task-1"), KEYS.runs("task-1"), KEYS.account("account_1"))
    indexes = [KEYS.all_tasks(), KEYS.due(), KEYS.running(), KEYS.resume()]
    indexes += [KEYS.status(s.value) for s in TaskStatus]
    assert [key for key in indexes if fake.zscore(key, "task-1") is not None] == []


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        pytest.param(None, make_task(), "task.created", id="create"),
        pytest.param(make_task(), make_task(round_num=1), "task.updated", id="update"),
        pytest.param(make_task(), None, "task.deleted", id="delete"),
    ],
)
def test_write_appends_one_event_to_the_stream(
    fake: fakeredis.FakeRedis, old: Task | None, new: Task | None, kind: str
) -> None:
    """Every write adds exactly one event, of its kind, naming the task and its account."""
    if old is not None:
        fake.hset(KEYS.task("task-1"), mapping=old.to_hash())
    write(fake, old, new)
    [event] = events(fake)
    assert (event["type"], event["task_id"], event["account_id"]) == (
        kind,
        "task-1",
        "account_1",
    )


ERROR = TaskStatus.ERROR


@pytest.mark.parametrize(
    ("old", "new", "alert"),
    [
        pytest.param(
            make_task(),
            make_task(status=ERROR, next_ms=None, last_error="login expired"),
            {"type": "task.error", "last_error": "login expired"},
            id="enters-error",
        ),
        pytest.param(
            make_task(status=ERROR, next_ms=None),
            make_task(status=PENDING),
            {"type": "task.recovered"},
            id="leaves-error",
        ),
        pytest.param(
            make_task(status=ERROR, next_ms=None),
            make_task(status=ERROR, next_ms=None, account_name="renamed"),
            None,
            id="stays-in-error",
        ),
        pytest.param(make_task(status=ERROR, next_ms=None), None, None, id="deleted-in-error"),
        pytest.param(make_task(), make_task(status=PAUSED), None, id="other-change"),
    ],
)
def test_write_status_entering_or_leaving_error_adds_its_alert_event(
    fake: fakeredis.FakeRedis, old: Task, new: Task | None, alert: dict[str, Any] | None
) -> None:
    """task.error when a task enters error (with its last error), task.recovered when it
    leaves it other than by deletion; nothing for other changes."""
    fake.hset(KEYS.task("task-1"), mapping=old.to_hash())
    write(fake, old, new)
    found = [e for e in events(fake) if e["type"] in ("task.error", "task.recovered")]
    if alert is None:
        assert found == []
    else:
        assert found == [{**alert, "task_id": "task-1", "account_id": "account_1"}]


def test_new_write_id_is_an_integer_redis_keeps_in_eight_bytes() -> None:
    """A fresh tag is the decimal text of a random integer below 2**63, and tags differ."""
    tags = {new_write_id() for _ in range(100)}
    assert len(tags) == 100
    assert all(tag.isdigit() and int(tag) < 2**63 and str(int(tag)) == tag for tag in tags)
