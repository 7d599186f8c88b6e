"""Specification tests for TaskStore and write.queue_task_write on an in-process fakeredis:
no spec here reaches a Lua script (those that do run on a real Redis, e.g. test_service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from taskdispatch.domain.exceptions import AccountTaskExistsError, TaskNotFoundError
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.domain.queries import TaskQuery
from taskdispatch.store.history import RunRecord
from taskdispatch.store.keys import Keys
from taskdispatch.store.tasks import TaskStore
from taskdispatch.store.write import WRITE_ID_FIELD
from tests.support.tasks import task_record

KEYS = Keys("tdunit:")
T0 = 1_767_837_600_000  # 2026-01-08T10:00:00+08:00
MIN = 60_000

PENDING = TaskStatus.PENDING
RUNNING = TaskStatus.RUNNING
PAUSED = TaskStatus.PAUSED
COMPLETED = TaskStatus.COMPLETED
ERROR = TaskStatus.ERROR


def next_of(n: int = 1) -> int:
    """The next run make_task(n) gets: an hour after its creation."""
    return T0 + n * MIN + 60 * MIN


def make_task(n: int = 1, **overrides: Any) -> Task:
    """Task n of account n, created n minutes after T0, next run an hour after creation."""
    values: dict[str, Any] = {
        "task_id": f"task-{n}",
        "account_id": f"account_{n}",
        "account_name": f"账号{n}",
        "created_ms": T0 + n * MIN,
        "next_ms": next_of(n),
        **overrides,
    }
    return task_record(**values)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def fake(server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def store(fake: fakeredis.FakeAsyncRedis) -> TaskStore:
    return TaskStore(fake, KEYS)


async def status_members(fake: fakeredis.FakeAsyncRedis) -> dict[str, list[str]]:
    """Each status index's members (only the non-empty ones)."""
    out: dict[str, list[Any]] = {
        s: await fake.zrange(KEYS.status(s), 0, -1) for s in (t.value for t in TaskStatus)
    }
    return {s: ids for s, ids in out.items() if ids}


async def due_score(fake: fakeredis.FakeAsyncRedis, task_id: str) -> float | None:
    score: float | None = await fake.zscore(KEYS.due(), task_id)
    return score


# --------------------------------------------------------------------------- create


async def test_create_writes_hash_account_indexes_and_due(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """create stores the hash (tagged with its write, like every write), binds the account
    and enters the all/status/due indexes."""
    task = make_task()
    await store.create(task)
    stored = await fake.hgetall(KEYS.task("task-1"))
    assert stored.pop(WRITE_ID_FIELD)
    assert stored == task.to_hash()
    assert await fake.get(KEYS.account("account_1")) == "task-1"
    assert await fake.zrange(KEYS.all_tasks(), 0, -1, withscores=True) == [
        ("task-1", task.created_ms)
    ]
    assert await status_members(fake) == {"pending": ["task-1"]}
    assert await due_score(fake, "task-1") == task.next_ms


async def test_create_paused_task_stays_out_of_due(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Only a pending task with a next run is in the due index."""
    await store.create(make_task(status=PAUSED))
    assert await due_score(fake, "task-1") is None
    assert await status_members(fake) == {"paused": ["task-1"]}


async def test_create_duplicate_account_raises_with_existing_id(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """A second task for the same account raises AccountTaskExistsError naming the first."""
    await store.create(make_task())
    with pytest.raises(AccountTaskExistsError) as info:
        await store.create(make_task(task_id="task-dup"))
    assert (info.value.account_id, info.value.existing_task_id) == ("account_1", "task-1")


async def test_create_duplicate_account_writes_nothing(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """A refused duplicate leaves no trace: no hash, no index entry, the binding unchanged."""
    await store.create(make_task())
    with pytest.raises(AccountTaskExistsError):
        await store.create(make_task(task_id="task-dup"))
    assert not await fake.exists(KEYS.task("task-dup"))
    assert await fake.zrange(KEYS.all_tasks(), 0, -1) == ["task-1"]
    assert await fake.get(KEYS.account("account_1")) == "task-1"


# --------------------------------------------------------------------------- mutate


async def test_mutate_returns_old_and_new_and_stores_new(store: TaskStore) -> None:
    """mutate applies the change to the stored record and returns (old, new)."""
    task = make_task()
    await store.create(task)
    old, new = await store.mutate("task-1", lambda t: t.evolve(account_name="新名字"))
    assert (old, new) == (task, task.evolve(account_name="新名字"))
    assert await store.get("task-1") == new


@pytest.mark.parametrize(
    ("before", "after", "in_due"),
    [
        pytest.param(PENDING, PAUSED, False, id="pending-to-paused-leaves-due"),
        pytest.param(PAUSED, PENDING, True, id="paused-to-pending-enters-due"),
        pytest.param(PENDING, RUNNING, False, id="pending-to-running-leaves-due"),
        pytest.param(RUNNING, PENDING, True, id="running-to-pending-enters-due"),
        pytest.param(PENDING, COMPLETED, False, id="pending-to-completed-leaves-due"),
        pytest.param(RUNNING, ERROR, False, id="running-to-error-stays-out"),
    ],
)
async def test_mutate_status_change_moves_indexes_together(
    store: TaskStore,
    fake: fakeredis.FakeAsyncRedis,
    before: TaskStatus,
    after: TaskStatus,
    in_due: bool,
) -> None:
    """A status change moves the task between status indexes and in/out of due at once."""
    task = make_task(status=before)
    await store.create(task)
    await store.mutate("task-1", lambda t: t.evolve(status=after))
    assert await status_members(fake) == {after.value: ["task-1"]}
    assert await due_score(fake, "task-1") == (task.next_ms if in_due else None)


async def test_mutate_pending_without_next_leaves_due(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """A pending task whose next run is cleared leaves the due index."""
    await store.create(make_task())
    await store.mutate("task-1", lambda t: t.evolve(next_ms=None))
    assert await due_score(fake, "task-1") is None


async def test_mutate_unchanged_next_keeps_claimed_due_score(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """An edit that keeps next and fence keeps a beat's claim (the pushed-forward due score)."""
    await store.create(make_task())
    claimed = next_of() + 5 * MIN  # as the beat's claim script leaves it
    await fake.zadd(KEYS.due(), {"task-1": claimed})
    await store.mutate("task-1", lambda t: t.evolve(account_name="新名字"))
    assert await due_score(fake, "task-1") == claimed


async def test_mutate_fence_change_resets_due_score_to_next(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """A fence change drops the beat's claim: the due score goes back to next_ms."""
    await store.create(make_task())
    await fake.zadd(KEYS.due(), {"task-1": next_of() + 5 * MIN})
    await store.mutate("task-1", lambda t: t.evolve(fence=t.fence + 1))
    assert await due_score(fake, "task-1") == next_of()


async def test_mutate_next_change_sets_due_score_to_new_next(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """A new next run replaces the due score."""
    await store.create(make_task())
    _, new = await store.mutate("task-1", lambda t: t.evolve(next_ms=T0 + 7 * MIN))
    assert new is not None
    assert await due_score(fake, "task-1") == T0 + 7 * MIN


@pytest.mark.parametrize(
    ("before", "after", "resume_score"),
    [
        pytest.param({}, {"status": PAUSED, "paused_until_ms": T0}, T0, id="timed-pause-enters"),
        pytest.param({"status": PAUSED}, {}, None, id="plain-pause-stays-out"),
        pytest.param(
            {"status": PAUSED, "paused_until_ms": T0},
            {"status": PENDING, "paused_until_ms": None},
            None,
            id="resume-leaves",
        ),
    ],
)
async def test_mutate_timed_pause_maintains_resume_index(
    store: TaskStore,
    fake: fakeredis.FakeAsyncRedis,
    before: dict[str, Any],
    after: dict[str, Any],
    resume_score: int | None,
) -> None:
    """A task paused with an until is in the resume index, scored by it, until it resumes."""
    await store.create(make_task(**before))
    await store.mutate("task-1", lambda t: t.evolve(**after))
    assert await fake.zscore(KEYS.resume(), "task-1") == resume_score


async def test_writes_append_one_event_each(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Create, update and delete each append one event to the stream, in order."""
    await store.create(make_task())
    await store.mutate("task-1", lambda t: t.evolve(status=PAUSED))
    await store.mutate("task-1", lambda t: None)
    entries = await fake.xrange(KEYS.events()) or []
    assert [fields["type"] for _, fields in entries if fields] == [
        "task.created",
        "task.updated",
        "task.deleted",
    ]


async def test_mutate_missing_task_raises_not_found(store: TaskStore) -> None:
    """Mutating an id with no stored task raises TaskNotFoundError."""
    with pytest.raises(TaskNotFoundError) as info:
        await store.mutate("nope", lambda t: t)
    assert info.value.task_id == "nope"


async def test_mutate_change_raising_writes_nothing(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """When the change function raises, the stored task is left as it was."""
    task = make_task()
    await store.create(task)

    def refuse(t: Task) -> Task:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await store.mutate("task-1", refuse)
    assert await store.get("task-1") == task


async def test_mutate_concurrent_write_retries_change_on_fresh_record(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis, server: fakeredis.FakeServer
) -> None:
    """A write to the task between read and EXEC aborts the transaction; change reruns on it."""
    await store.create(make_task())
    other = fakeredis.FakeRedis(server=server, decode_responses=True)
    seen: list[Task] = []

    def change(t: Task) -> Task:
        seen.append(t)
        if len(seen) == 1:
            # Another writer pauses the task after our WATCH and read.
            other.hset(KEYS.task("task-1"), mapping={"status": "paused", "fence": "9"})
        return t.evolve(round_num=t.round_num + 1)

    _, new = await store.mutate("task-1", change)
    assert [t.status for t in seen] == [PENDING, PAUSED]
    assert new is not None
    assert (new.status, new.fence, new.round_num) == (PAUSED, 9, 1)
    assert await store.get("task-1") == new
    other.close()


async def test_mutate_concurrent_write_leaves_consistent_indexes(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis, server: fakeredis.FakeServer
) -> None:
    """After the retry the status index and the due set agree with the final record."""
    await store.create(make_task())
    other = fakeredis.FakeRedis(server=server, decode_responses=True)
    runs = 0

    def change(t: Task) -> Task:
        nonlocal runs
        runs += 1
        if runs == 1:
            other.hset(KEYS.task("task-1"), "account_name", "抢先")
        return t.evolve(status=PAUSED)

    await store.mutate("task-1", change)
    assert runs == 2
    assert (await store.get("task-1")) == make_task(account_name="抢先", status=PAUSED)
    assert await status_members(fake) == {"paused": ["task-1"]}
    assert await due_score(fake, "task-1") is None
    other.close()


# --------------------------------------------------------------------------- delete


async def test_mutate_to_none_deletes_every_key_and_index_entry(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Deleting removes hash, account binding, runs, and the all/status/due/running entries."""
    await store.create(make_task(status=RUNNING))
    await fake.zadd(KEYS.due(), {"task-1": T0})  # a stale due entry must go too
    await fake.zadd(KEYS.running(), {"task-1": T0 + MIN})
    await fake.zadd(KEYS.resume(), {"task-1": T0 + 2 * MIN})
    await fake.lpush(KEYS.runs("task-1"), '{"round_num": 1}')
    old, new = await store.mutate("task-1", lambda t: None)
    assert (old.task_id, new) == ("task-1", None)
    # What may remain are global keys (wake-up token, event stream), none naming the task.
    for key in await fake.keys("*"):
        assert "task-1" not in key and "account_1" not in key, key
        if await fake.type(key) == "zset":
            assert await fake.zscore(key, "task-1") is None, key


async def test_delete_leaves_other_tasks_untouched(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Deleting one task keeps every other task and its index entries."""
    await store.create(make_task(1))
    await store.create(make_task(2))
    await store.mutate("task-1", lambda t: None)
    assert await store.get("task-2") == make_task(2)
    assert await fake.zrange(KEYS.all_tasks(), 0, -1) == ["task-2"]
    assert await store.task_id_for_account("account_2") == "task-2"
    assert await due_score(fake, "task-2") == make_task(2).next_ms


async def test_delete_frees_the_account_for_a_new_task(store: TaskStore) -> None:
    """After a delete the account can hold a new task."""
    await store.create(make_task())
    await store.mutate("task-1", lambda t: None)
    await store.create(make_task(task_id="task-new"))
    assert await store.task_id_for_account("account_1") == "task-new"


# --------------------------------------------------------------------------- reads


@pytest.fixture
async def five(store: TaskStore) -> list[Task]:
    """Five tasks created in order 1..5; tasks 2 and 4 paused. Stored in reverse order."""
    tasks = [make_task(n, status=PAUSED if n % 2 == 0 else PENDING) for n in range(1, 6)]
    for task in reversed(tasks):
        await store.create(task)
    return tasks


@pytest.mark.parametrize(
    ("status", "offset", "limit", "total", "expected"),
    [
        pytest.param(None, 0, 100, 5, [1, 2, 3, 4, 5], id="all-in-creation-order"),
        pytest.param(None, 1, 2, 5, [2, 3], id="offset-and-limit"),
        pytest.param(None, 4, 10, 5, [5], id="last-partial-page"),
        pytest.param(None, 5, 10, 5, [], id="offset-past-end"),
        pytest.param("paused", 0, 100, 2, [2, 4], id="status-filter"),
        pytest.param("pending", 1, 1, 3, [3], id="status-filter-paged"),
        pytest.param("error", 0, 100, 0, [], id="status-with-no-tasks"),
    ],
)
async def test_page_returns_creation_order_and_total(
    store: TaskStore,
    five: list[Task],
    status: str | None,
    offset: int,
    limit: int,
    total: int,
    expected: list[int],
) -> None:
    """page() lists in creation order, slices by offset/limit and counts all that match."""
    got_total, tasks = await store.page(TaskQuery(status=status, offset=offset, limit=limit))
    assert (got_total, tasks) == (total, [five[n - 1] for n in expected])


async def test_snapshot_counts_every_status(store: TaskStore, five: list[Task]) -> None:
    """The snapshot has one count per status, zero where empty."""
    snapshot = await store.snapshot(now_ms=0, alive_since_ms=0)
    assert snapshot.counts == {
        "pending": 3,
        "running": 0,
        "paused": 2,
        "completed": 0,
        "error": 0,
    }


async def test_get_many_skips_vanished_ids(store: TaskStore, five: list[Task]) -> None:
    """get_many keeps the requested order and leaves out ids with no stored task."""
    got = await store.get_many(["task-3", "gone", "task-1"])
    assert got == [five[2], five[0]]


async def test_get_missing_task_returns_none(store: TaskStore) -> None:
    """get() of an unknown id is None."""
    assert await store.get("nope") is None


async def test_snapshot_running_lists_running_index_by_lease_expiry(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis, five: list[Task]
) -> None:
    """snapshot().running loads the tasks in the running index, soonest lease expiry first."""
    await fake.zadd(KEYS.running(), {"task-5": T0 + 2 * MIN, "task-1": T0 + 3 * MIN})
    snap = await store.snapshot(now_ms=T0, alive_since_ms=T0)
    assert snap.running == [five[4], five[0]]


async def test_snapshot_enabled_defaults_on_and_follows_flag(store: TaskStore) -> None:
    """The dispatcher flag is on until set off, and can be set on again."""
    seen = []
    for flag in (None, False, True):
        if flag is not None:
            await store.set_enabled(flag)
        seen.append((await store.snapshot(now_ms=T0, alive_since_ms=T0)).enabled)
    assert seen == [True, False, True]


async def test_snapshot_counts_heartbeats_since(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Beats and workers count as alive when their heartbeat is at or after alive_since_ms."""
    await fake.zadd(KEYS.beats(), {"beat-old": T0 - 1, "beat-new": T0})
    await fake.zadd(KEYS.workers(), {"w1": T0 + 5, "w2": T0 + 9, "w-old": T0 - MIN})
    snap = await store.snapshot(now_ms=T0 + 10, alive_since_ms=T0)
    assert (snap.beats_alive, snap.workers_alive) == (1, 2)


async def test_snapshot_due_backlog_counts_only_due_scores(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Backlog and oldest due count due scores <= now; claimed (pushed) scores are not due."""
    await fake.zadd(KEYS.due(), {"a": T0 - 2 * MIN, "b": T0, "claimed": T0 + MIN})
    snap = await store.snapshot(now_ms=T0, alive_since_ms=T0)
    assert (snap.due_backlog, snap.oldest_due_ms) == (2, T0 - 2 * MIN)


async def test_snapshot_nothing_due_has_no_oldest(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """With only future due scores there is no backlog and no oldest due time."""
    await fake.zadd(KEYS.due(), {"later": T0 + MIN})
    snap = await store.snapshot(now_ms=T0, alive_since_ms=T0)
    assert (snap.due_backlog, snap.oldest_due_ms) == (0, None)


async def test_runs_returns_newest_first_up_to_limit(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """runs() decodes the round records, newest first, at most `limit` of them."""
    for n in (1, 2, 3):
        record = RunRecord(outcome="ok", scheduled_ms=T0 + n * MIN, round_num=n)
        await fake.lpush(KEYS.runs("task-1"), record.to_json())
    assert [r.round_num for r in await store.runs("task-1", limit=2)] == [3, 2]


async def test_wake_beats_leaves_one_entry(
    store: TaskStore, fake: fakeredis.FakeAsyncRedis
) -> None:
    """Repeated wake-ups keep the wake list at one element."""
    for _ in range(3):
        await store.wake_beats()
    assert await fake.llen(KEYS.wake()) == 1
