"""Specification of taskdispatch.store.limits and of its use by rounds, recovery and task writes.

Real Redis (the session's private server), in this process. Limits are saved through the
service; rounds are admitted with `limits.admit` at explicit instants (the slots, `now_ms`
and park deadlines are all given), released with `limits.queue_release`, and, end to end,
run by an in-process `RoundRunner` (`runner_for`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import redis

from taskdispatch.domain import lifecycle
from taskdispatch.domain.bodies import TaskChange
from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.lease import AccountLease
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.engine.rounds import RoundRunner
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys
from taskdispatch.store.limits import (
    Admission,
    Limit,
    LimitBook,
    Match,
    admit,
    applicable,
    limit_from_body,
    queue_release,
)
from taskdispatch.store.transaction import Change, Read, transact
from tests.support.probes import add_probe_task, stored_task, wait_until
from tests.support.runner import housekeep, message_for, runner_for
from tests.support.tasks import task_record

KEYS = Keys("td:")
TTL_MS = 30_000
PARK_MS = 60_000
DEV = "dev"


class Clock:
    """The service's clock, set by the test."""

    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


@pytest.fixture
def t0() -> int:
    """A whole second near the real clock: every instant of a test is an offset from it."""
    return now_ms() // 1000 * 1000


@pytest.fixture
def clock(t0: int) -> Clock:
    return Clock(t0)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
async def service(redis_url: str, clock: Clock) -> AsyncIterator[TaskDispatcher]:
    settings = Settings(redis_url=redis_url, key_prefix="td:")
    async with TaskDispatcher(settings, task_types={"probe", "noop"}, clock=clock) as d:
        yield d


@pytest.fixture
def runners(redis_url: str) -> Iterator[list[tuple[RoundRunner, redis.Redis]]]:
    """The runners a test made (runner_for), their clients closed at teardown."""
    made: list[tuple[RoundRunner, redis.Redis]] = []
    yield made
    for round_runner, c in made:
        round_runner.lease_redis.close()
        c.close()


# ---- helpers ------------------------------------------------------------------------------


def _bare(
    tags: tuple[str, ...] = (), sys_type: str = "mac_intel", task_type: str = "probe"
) -> Task:
    """A task record that exists only in Python (for Match and applicable)."""
    return task_record(task_type=task_type, sys_type=sys_type, tags=tags)


async def _task_at(
    d: TaskDispatcher, account: str, slot_ms: int, *, tags: tuple[str, ...] = (DEV,)
) -> str:
    """A pending probe task of `account` whose current slot is `slot_ms` (due then)."""
    task_id = await add_probe_task(d, account, interval=3600, tags=list(tags))
    await d.store.mutate(task_id, lambda t: t.evolve(next_ms=slot_ms, fence=t.fence + 1))
    return task_id


def _admit(
    client: redis.Redis,
    task_id: str,
    *,
    now: int,
    park_until: int | None = None,
    book: LimitBook | None = None,
    lease_token: str | None = None,
    lease_ttl_ms: int = TTL_MS,
) -> Admission:
    """What a worker's round does first: admit the task's current slot at `now`."""
    return admit(
        client,
        KEYS,
        book or LimitBook(client, KEYS),
        stored_task(client, task_id),
        lease_token=lease_token or f"lease-{task_id}",
        lease_ttl_ms=lease_ttl_ms,
        start_token=uuid.uuid4().hex,
        now_ms=now,
        park_until_ms=now + PARK_MS if park_until is None else park_until,
    )


def _release(client: redis.Redis, task_id: str, holds: tuple[str, ...], *, now: int) -> int:
    """What a round's end does with its places (definitions as they are now); the wakes."""
    book = LimitBook(client, KEYS)
    book.reload()
    with client.pipeline(transaction=False) as pipe:
        queue_release(pipe, KEYS, task_id, holds, book=book.limits, now_ms=now)
        replies = pipe.execute()
    return int(replies[0]) if replies else 0


def _scores(client: redis.Redis, key: str) -> dict[str, float]:
    pairs = cast(list[tuple[str, float]], client.zrange(key, 0, -1, withscores=True))
    return {member: float(score) for member, score in pairs}


def _places(client: redis.Redis, name: str = DEV) -> dict[str, float]:
    return _scores(client, KEYS.limit_places(name))


def _waiters(client: redis.Redis, name: str = DEV) -> dict[str, float]:
    return _scores(client, KEYS.limit_waiters(name))


def _due(client: redis.Redis, task_id: str) -> float | None:
    score = client.zscore(KEYS.due(), task_id)
    return None if score is None else float(score)


def _parked(client: redis.Redis, task_id: str) -> bool:
    return client.hget(KEYS.task(task_id), "parked") == "1"


def _wait_fields(client: redis.Redis, task_id: str) -> tuple[Any, Any, Any]:
    task = stored_task(client, task_id)
    return task.wait_limit, task.wait_code, task.wait_next_ms


async def _cap(d: TaskDispatcher, n: int, name: str = DEV, tag: str = DEV) -> None:
    await d.put_limit(name, match={"tag": tag}, max_concurrent=n)


# ---- Match, Limit, limit_from_body ------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "task", "covered"),
    [
        pytest.param(Match(), _bare(), True, id="empty-match-covers-all"),
        pytest.param(Match(tag="dev"), _bare(tags=("x", "dev")), True, id="tag-among-tags"),
        pytest.param(Match(tag="dev"), _bare(tags=("x",)), False, id="tag-absent"),
        pytest.param(Match(tag="dev"), _bare(), False, id="tag-no-tags"),
        pytest.param(Match(sys_type="mac_intel"), _bare(), True, id="sys-type-equal"),
        pytest.param(Match(sys_type="mac_arm"), _bare(), False, id="sys-type-other"),
        pytest.param(Match(task_type="probe"), _bare(), True, id="task-type-equal"),
        pytest.param(Match(task_type="noop"), _bare(), False, id="task-type-other"),
        pytest.param(
            Match(tag="dev", sys_type="mac_intel", task_type="probe"),
            _bare(tags=("dev",)),
            True,
            id="all-three-hold",
        ),
        pytest.param(
            Match(tag="dev", sys_type="mac_arm"), _bare(tags=("dev",)), False, id="one-of-two-fails"
        ),
        pytest.param(
            Match(tag="dev", task_type="noop"), _bare(tags=("dev",)), False, id="tag-ok-type-not"
        ),
    ],
)
def test_match_covers_when_every_given_criterion_holds(
    match: Match, task: Task, covered: bool
) -> None:
    """A match covers a task when all its given criteria hold; none given covers every task."""
    assert match.covers(task) is covered


def test_applicable_lists_the_covering_limits_in_name_order() -> None:
    """applicable() keeps only the limits covering the task, sorted by name."""
    limits = [
        Limit("zeta", Match(), max_concurrent=1),
        Limit("alpha", Match(tag="dev"), max_concurrent=1),
        Limit("mid", Match(tag="other"), max_concurrent=1),
    ]
    assert [lim.name for lim in applicable(limits, _bare(tags=("dev",)))] == ["alpha", "zeta"]


@pytest.mark.parametrize(
    ("name", "body", "key", "field"),
    [
        pytest.param("bad name", {"max_concurrent": 1}, "limit_name", "name", id="name-space"),
        pytest.param("-lead", {"max_concurrent": 1}, "limit_name", "name", id="name-lead-dash"),
        pytest.param("x" * 65, {"max_concurrent": 1}, "limit_name", "name", id="name-65-chars"),
        pytest.param("a/b", {"max_concurrent": 1}, "limit_name", "name", id="name-slash"),
        pytest.param(
            "ok",
            {"match": {"colour": "red"}, "max_concurrent": 1},
            "limit_match",
            "match",
            id="match-unknown-key",
        ),
        pytest.param(
            "ok",
            {"match": "dev", "max_concurrent": 1},
            "limit_match",
            "match",
            id="match-not-object",
        ),
        pytest.param(
            "ok",
            {"match": {"tag": ""}, "max_concurrent": 1},
            "limit_match",
            "match.tag",
            id="match-empty-tag",
        ),
        pytest.param(
            "ok",
            {"match": {"sys_type": 5}, "max_concurrent": 1},
            "limit_match",
            "match.sys_type",
            id="match-not-text",
        ),
        pytest.param(
            "ok",
            {"match": {"task_type": "x" * 129}, "max_concurrent": 1},
            "limit_match",
            "match.task_type",
            id="match-129-chars",
        ),
        pytest.param(
            "ok", {"max_concurrent": 0}, "limit_cap_range", "max_concurrent", id="cap-zero"
        ),
        pytest.param(
            "ok",
            {"max_concurrent": 100_001},
            "limit_cap_range",
            "max_concurrent",
            id="cap-over-max",
        ),
        pytest.param(
            "ok", {"max_concurrent": True}, "limit_cap_range", "max_concurrent", id="cap-bool"
        ),
        pytest.param(
            "ok", {"max_concurrent": 2.0}, "limit_cap_range", "max_concurrent", id="cap-float"
        ),
        pytest.param(
            "ok",
            {"max_starts": 0, "per_s": 10},
            "limit_cap_range",
            "max_starts",
            id="starts-zero",
        ),
        pytest.param(
            "ok",
            {"max_starts": 1_000_001, "per_s": 10},
            "limit_cap_range",
            "max_starts",
            id="starts-over-max",
        ),
        pytest.param(
            "ok",
            {"max_starts": 1, "per_s": 7 * 86_400 + 1},
            "limit_cap_range",
            "per_s",
            id="window-over-a-week",
        ),
        pytest.param("ok", {}, "limit_needs_cap", "max_concurrent", id="no-cap"),
        pytest.param(
            "ok",
            {"match": {"tag": "dev"}},
            "limit_needs_cap",
            "max_concurrent",
            id="match-but-no-cap",
        ),
        pytest.param("ok", {"per_s": 10}, "limit_needs_cap", "max_concurrent", id="window-only"),
        pytest.param("ok", {"max_starts": 3}, "limit_rate_pair", "per_s", id="starts-no-window"),
        pytest.param(
            "ok",
            {"max_concurrent": 1, "per_s": 10},
            "limit_rate_pair",
            "per_s",
            id="window-no-starts",
        ),
    ],
)
def test_limit_from_body_invalid_raises_invalid_task_error_naming_key_and_field(
    name: str, body: dict[str, Any], key: str, field: str
) -> None:
    """Each bad definition raises InvalidTaskError with its message key and field."""
    with pytest.raises(InvalidTaskError) as caught:
        limit_from_body(name, body, now_ms=1000, created_ms=None)
    assert (caught.value.key, caught.value.field) == (key, field)


def test_limit_from_body_valid_new_limit_is_created_and_updated_now() -> None:
    """A new limit keeps its caps and given criteria (None dropped), created and updated now."""
    limit = limit_from_body(
        "dev.mac-01@a:b_c",
        {
            "match": {"tag": "dev", "sys_type": None},
            "max_concurrent": 100_000,
            "max_starts": 1_000_000,
            "per_s": 7 * 86_400,
        },
        now_ms=5000,
        created_ms=None,
    )
    assert limit == Limit(
        name="dev.mac-01@a:b_c",
        match=Match(tag="dev"),
        max_concurrent=100_000,
        max_starts=1_000_000,
        per_s=7 * 86_400,
        created_ms=5000,
        updated_ms=5000,
    )


def test_limit_from_body_replacing_keeps_created_ms_of_the_replaced_limit() -> None:
    """A replacement keeps the creation instant it is given and is updated now."""
    limit = limit_from_body("dev", {"max_concurrent": 2}, now_ms=9000, created_ms=1000)
    assert (limit.created_ms, limit.updated_ms) == (1000, 9000)


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(Limit("a", Match(), max_concurrent=3, created_ms=1, updated_ms=2), id="cap"),
        pytest.param(
            Limit(
                "b",
                Match(tag="dev", sys_type="mac_intel", task_type="probe"),
                max_starts=5,
                per_s=60,
                created_ms=10,
                updated_ms=20,
            ),
            id="rate-all-criteria",
        ),
        pytest.param(
            Limit("c", Match(tag="标签"), max_concurrent=1, max_starts=2, per_s=3), id="both-caps"
        ),
    ],
)
def test_limit_json_round_trip_gives_the_same_limit(limit: Limit) -> None:
    """from_json(to_json()) is the identity."""
    assert Limit.from_json(limit.name, limit.to_json()) == limit


# ---- admit: admitted, gone and account_locked -----------------------------------------------


async def test_admit_without_limits_is_admitted_and_sets_the_account_lock(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """No limit covers the task: admitted, holding nothing, the lease set with its token and TTL."""
    task_id = await _task_at(service, "acct-free", t0)
    admission = _admit(client, task_id, now=t0, lease_token="tok")
    assert (admission.admitted, admission.code, admission.holds) == (True, None, ())
    assert client.get(KEYS.lock("acct-free")) == "tok"
    assert 0 < client.pttl(KEYS.lock("acct-free")) <= TTL_MS


async def test_admit_with_the_account_locked_returns_account_locked_and_parks_nothing(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Another holder of the account's lease: nothing taken, nothing parked, even when full."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 2000)
    _admit(client, holder, now=t0)
    task_id = await _task_at(service, "acct-locked", t0 - 1000)
    client.set(KEYS.lock("acct-locked"), "another-round", px=60_000)
    admission = _admit(client, task_id, now=t0)
    assert admission == Admission("account_locked")
    assert client.get(KEYS.lock("acct-locked")) == "another-round"
    assert _waiters(client) == {}
    assert _wait_fields(client, task_id) == (None, None, None)
    assert _due(client, task_id) == t0 - 1000


async def test_admit_of_a_task_deleted_since_it_was_read_is_gone_and_writes_nothing(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The worker read the task, then it was deleted: no lease, and no partial hash left."""
    task_id = await _task_at(service, "acct-gone", t0)
    read = stored_task(client, task_id)
    await service.delete_task(task_id)
    admission = admit(
        client,
        KEYS,
        LimitBook(client, KEYS),
        read,
        lease_token="tok",
        lease_ttl_ms=TTL_MS,
        start_token="start",
        now_ms=t0,
        park_until_ms=t0 + PARK_MS,
    )
    assert admission == Admission("gone")
    assert not client.exists(KEYS.task(task_id), KEYS.lock("acct-gone"))


async def test_admit_of_a_task_whose_slot_moved_since_it_was_read_is_gone(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A slot moved (run now, reorder) after the read: the stale read admits nothing."""
    task_id = await _task_at(service, "acct-moved", t0)
    read = stored_task(client, task_id)
    client.hset(KEYS.task(task_id), "next_ms", t0 + 60_000)
    admission = admit(
        client,
        KEYS,
        LimitBook(client, KEYS),
        read,
        lease_token="tok",
        lease_ttl_ms=TTL_MS,
        start_token="start",
        now_ms=t0,
        park_until_ms=t0 + PARK_MS,
    )
    assert admission == Admission("gone")
    assert not client.exists(KEYS.lock("acct-moved"))


async def test_admit_under_a_concurrency_limit_takes_a_place_scored_by_its_lease_expiry(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Admitted under a limit with room: a place until now + lease TTL, named in holds."""
    await _cap(service, 2)
    task_id = await _task_at(service, "acct-a", t0)
    admission = _admit(client, task_id, now=t0 + 5)
    assert (admission.admitted, admission.holds) == (True, (DEV,))
    assert _places(client) == {task_id: t0 + 5 + TTL_MS}


async def test_admit_under_a_rate_limit_records_a_start_and_holds_no_place(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A rate-only limit counts the start at now but gives no place to hold or release."""
    await service.put_limit("burst", match={"tag": DEV}, max_starts=5, per_s=10)
    task_id = await _task_at(service, "acct-a", t0)
    admission = _admit(client, task_id, now=t0 + 7)
    assert (admission.admitted, admission.holds) == (True, ())
    assert _places(client, "burst") == {}
    assert list(_scores(client, KEYS.limit_starts("burst")).values()) == [t0 + 7]


# ---- admit: a full concurrency limit parks ----------------------------------------------


async def test_admit_with_a_full_concurrency_limit_returns_limit_full_with_its_use(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The one place is taken: "limit_full" naming the limit, 1 in use of capacity 1."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 2000)
    _admit(client, holder, now=t0)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    admission = _admit(client, waiter, now=t0 + 10)
    assert admission == Admission("limit_full", limit=DEV, in_use=1, capacity=1, next_start_ms=None)
    assert not client.exists(KEYS.lock("acct-w"))
    assert list(_places(client)) == [holder]


async def test_admit_with_a_full_concurrency_limit_writes_the_wait_on_the_task(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The parked task's hash says which limit it waits for, why, and that it is parked."""
    await _cap(service, 1)
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    _admit(client, waiter, now=t0 + 10)
    assert _wait_fields(client, waiter) == (DEV, "limit_full", None)
    assert _parked(client, waiter)
    task = stored_task(client, waiter)
    assert (task.status, task.next_ms) == (TaskStatus.PENDING, t0 - 1000)


async def test_admit_with_a_full_concurrency_limit_queues_the_slot_scored_by_the_slot(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The parked task joins the limit's waiters with its slot as score."""
    await _cap(service, 1)
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    _admit(client, waiter, now=t0 + 10)
    assert _waiters(client) == {waiter: t0 - 1000}


async def test_admit_with_a_full_concurrency_limit_makes_the_task_due_at_the_park_deadline(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The parked task's due score is the park deadline given (no polling before it)."""
    await _cap(service, 1)
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    _admit(client, waiter, now=t0 + 10, park_until=t0 + 45_000)
    assert _due(client, waiter) == t0 + 45_000


async def test_admit_expired_places_do_not_count(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A place whose expiry passed (its holder stopped renewing) frees itself."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 2000)
    _admit(client, holder, now=t0)  # its place expires at t0 + TTL_MS
    task_id = await _task_at(service, "acct-n", t0 - 1000)
    admission = _admit(client, task_id, now=t0 + TTL_MS + 1)
    assert (admission.admitted, admission.holds) == (True, (DEV,))
    assert _places(client) == {task_id: t0 + TTL_MS + 1 + TTL_MS}


async def test_admit_a_place_expiring_exactly_now_is_free(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A place scored now has expired (scores are expiries, now included)."""
    await _cap(service, 1)
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0)
    task_id = await _task_at(service, "acct-n", t0 - 1000)
    assert _admit(client, task_id, now=t0 + TTL_MS).admitted


# ---- admit: rate limits -----------------------------------------------------------------


async def _rated(d: TaskDispatcher, client: redis.Redis, t0: int) -> tuple[str, str]:
    """A limit of 2 starts per 10 s over tag dev, used up by starts at t0 and t0 + 1 s."""
    await d.put_limit("burst", match={"tag": DEV}, max_starts=2, per_s=10)
    first = await _task_at(d, "acct-1", t0 - 5000)
    second = await _task_at(d, "acct-2", t0 - 4000)
    assert _admit(client, first, now=t0).admitted
    assert _admit(client, second, now=t0 + 1000).admitted
    return first, second


async def test_admit_third_start_in_the_window_is_rate_limited_until_first_start_plus_window(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """max_starts 2 per 10 s: the third start is "rate_limited", next start = first + 10 s."""
    await _rated(service, client, t0)
    third = await _task_at(service, "acct-3", t0 - 3000)
    admission = _admit(client, third, now=t0 + 2000)
    assert admission == Admission(
        "rate_limited", limit="burst", in_use=0, capacity=None, next_start_ms=t0 + 10_000
    )
    assert _wait_fields(client, third) == ("burst", "rate_limited", t0 + 10_000)


async def test_admit_rate_limited_head_waiter_is_due_at_the_next_free_start(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The first waiter of a rate limit looks again exactly when a start frees, not later."""
    await _rated(service, client, t0)
    third = await _task_at(service, "acct-3", t0 - 3000)
    _admit(client, third, now=t0 + 2000, park_until=t0 + 60_000)
    assert _due(client, third) == t0 + 10_000


async def test_admit_rate_limited_waiter_behind_the_head_is_due_at_its_park_deadline(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A rate-limited waiter behind an earlier slot waits for a wake, not for the next start."""
    await _rated(service, client, t0)
    third = await _task_at(service, "acct-3", t0 - 3000)
    _admit(client, third, now=t0 + 2000)
    fourth = await _task_at(service, "acct-4", t0 - 2000)
    admission = _admit(client, fourth, now=t0 + 2500, park_until=t0 + 40_000)
    assert (admission.code, admission.limit) == ("rate_limited", "burst")
    assert _due(client, fourth) == t0 + 40_000
    assert _waiters(client, "burst") == {third: t0 - 3000, fourth: t0 - 2000}


async def test_admit_rate_limited_waiter_starts_once_the_window_has_passed(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """At first start + window the oldest start no longer counts: the waiter is admitted."""
    await _rated(service, client, t0)
    third = await _task_at(service, "acct-3", t0 - 3000)
    _admit(client, third, now=t0 + 2000)
    assert _admit(client, third, now=t0 + 10_000).admitted
    assert _waiters(client, "burst") == {}
    assert _wait_fields(client, third) == (None, None, None)


# ---- admit: definitions, head rule, stale waiters, several limits -----------------------


async def test_admit_with_a_stale_book_reloads_and_applies_the_new_definition(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A book loaded before the limit was raised to 2 is reloaded: the round gets the 2nd place."""
    await _cap(service, 1)
    book = LimitBook(client, KEYS)
    book.reload()
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0, book=book)
    await _cap(service, 2)
    task_id = await _task_at(service, "acct-n", t0 - 1000)
    admission = _admit(client, task_id, now=t0 + 10, book=book)
    assert (admission.admitted, admission.holds) == (True, (DEV,))
    assert book.limits[DEV].max_concurrent == 2
    assert book.version == client.get(KEYS.limits_version())


async def test_admit_with_a_stale_book_applies_a_limit_added_since(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A book loaded when no limit existed still parks a round under a limit added since."""
    book = LimitBook(client, KEYS)
    book.reload()
    assert book.limits == {}
    await _cap(service, 1)
    _admit(client, await _task_at(service, "acct-h", t0 - 2000), now=t0, book=book)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    assert _admit(client, waiter, now=t0 + 10, book=book).code == "limit_full"


async def test_admit_with_a_free_place_and_an_earlier_waiter_parks_the_later_slot(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """FIFO by slot: the place freed for an earlier-slot waiter is kept for it."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 9000)
    holds = _admit(client, holder, now=t0).holds
    early = await _task_at(service, "acct-early", t0 - 3000)
    _admit(client, early, now=t0 + 10)
    _release(client, holder, holds, now=t0 + 20)  # wakes `early`; its message travels
    late = await _task_at(service, "acct-late", t0 - 1000)
    admission = _admit(client, late, now=t0 + 30, park_until=t0 + 50_000)
    assert admission == Admission("limit_full", limit=DEV, in_use=0, capacity=1)
    assert _waiters(client) == {early: t0 - 3000, late: t0 - 1000}
    assert _due(client, late) == t0 + 50_000
    assert _places(client) == {}


async def test_admit_a_slot_earlier_than_every_waiter_takes_the_free_place(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The head rule only holds back later slots: an earlier slot goes first."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 9000)
    holds = _admit(client, holder, now=t0).holds
    waiter = await _task_at(service, "acct-w", t0 - 3000)
    _admit(client, waiter, now=t0 + 10)
    _release(client, holder, holds, now=t0 + 20)
    earliest = await _task_at(service, "acct-earliest", t0 - 5000)
    assert _admit(client, earliest, now=t0 + 30).admitted


async def test_admit_the_woken_head_waiter_takes_its_place(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The head waiter is admitted, leaves the waiters and its wait fields are cleared."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 9000)
    holds = _admit(client, holder, now=t0).holds
    waiter = await _task_at(service, "acct-w", t0 - 3000)
    _admit(client, waiter, now=t0 + 10)
    _release(client, holder, holds, now=t0 + 20)
    assert _admit(client, waiter, now=t0 + 30).holds == (DEV,)
    assert _waiters(client) == {}
    assert _wait_fields(client, waiter) == (None, None, None)
    assert not _parked(client, waiter)


async def test_admit_a_waiter_whose_task_was_deleted_does_not_block(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A waiter entry without a task (an earlier slot) is dropped; the place is taken."""
    await _cap(service, 1)
    client.zadd(KEYS.limit_waiters(DEV), {"gone-task": t0 - 9000})
    task_id = await _task_at(service, "acct-n", t0 - 1000)
    assert _admit(client, task_id, now=t0).admitted
    assert _waiters(client) == {}


async def test_admit_a_waiter_whose_slot_moved_does_not_block(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A waiter whose task now has another slot than its entry's score is stale and dropped."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 9000)
    _admit(client, holder, now=t0)
    moved = await _task_at(service, "acct-moved", t0 - 5000)
    _admit(client, moved, now=t0 + 10)
    client.hset(KEYS.task(moved), "next_ms", t0 + 3_600_000)  # its slot moved on
    client.zrem(KEYS.limit_places(DEV), holder)  # the place is free (no wake)
    task_id = await _task_at(service, "acct-n", t0 - 1000)
    assert _admit(client, task_id, now=t0 + 20).admitted
    assert moved not in _waiters(client)


async def test_admit_under_two_limits_with_one_full_parks_on_it_and_holds_nothing_else(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Room in "a-room", none in "b-full": parked on b-full, no place nor wait in a-room."""
    await _cap(service, 1, name="a-room", tag="ta")
    await _cap(service, 1, name="b-full", tag="tb")
    _admit(client, await _task_at(service, "acct-h", t0 - 9000, tags=("tb",)), now=t0)
    both = await _task_at(service, "acct-both", t0 - 1000, tags=("ta", "tb"))
    admission = _admit(client, both, now=t0 + 10)
    assert (admission.code, admission.limit) == ("limit_full", "b-full")
    assert not client.exists(KEYS.lock("acct-both"))
    assert _places(client, "a-room") == {}
    assert _waiters(client, "a-room") == {}
    assert _waiters(client, "b-full") == {both: t0 - 1000}


async def test_admit_under_two_limits_with_room_in_both_takes_both_places(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Every covering concurrency limit gives one place, all in one admission."""
    await _cap(service, 1, name="a-room", tag="ta")
    await _cap(service, 1, name="b-room", tag="tb")
    both = await _task_at(service, "acct-both", t0 - 1000, tags=("ta", "tb"))
    assert _admit(client, both, now=t0).holds == ("a-room", "b-room")
    assert list(_places(client, "a-room")) == list(_places(client, "b-room")) == [both]


async def _both_blocked_in_turn(
    d: TaskDispatcher, client: redis.Redis, t0: int
) -> tuple[str, str, str, tuple[str, ...]]:
    """`both` (under a-cap and b-cap, cap 1 each) found b-cap full, then, woken by its
    release, a-cap full; `next_b` (a later slot, b-cap only) parked meanwhile. Returns
    (both, next_b, the a-cap holder, its holds)."""
    await _cap(d, 1, name="a-cap", tag="ta")
    await _cap(d, 1, name="b-cap", tag="tb")
    holder_b = await _task_at(d, "acct-hb", t0 - 9000, tags=("tb",))
    holds_b = _admit(client, holder_b, now=t0).holds
    both = await _task_at(d, "acct-both", t0 - 5000, tags=("ta", "tb"))
    assert _admit(client, both, now=t0 + 10).limit == "b-cap"  # a-cap had room
    next_b = await _task_at(d, "acct-next", t0 - 4000, tags=("tb",))
    assert _admit(client, next_b, now=t0 + 20).limit == "b-cap"
    holder_a = await _task_at(d, "acct-ha", t0 - 8000, tags=("ta",))
    holds_a = _admit(client, holder_a, now=t0 + 30).holds
    _release(client, holder_b, holds_b, now=t0 + 40)  # b-cap has room: `both` is woken
    assert _admit(client, both, now=t0 + 50).limit == "a-cap"  # now a-cap is full
    return both, next_b, holder_a, holds_a


async def test_admit_a_waiter_blocked_by_another_limit_keeps_its_place_in_the_first(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Woken by b-cap but blocked by a-cap, `both` stays b-cap's head: `next_b` (a later
    slot) neither is woken nor may take the free place."""
    both, next_b, _, _ = await _both_blocked_in_turn(service, client, t0)
    assert stored_task(client, both).waits == ("b-cap", "a-cap")
    assert _waiters(client, "b-cap") == {both: t0 - 5000, next_b: t0 - 4000}
    assert _parked(client, next_b)
    refused = _admit(client, next_b, now=t0 + 60)
    assert (refused.code, refused.limit) == ("limit_full", "b-cap")
    assert _places(client, "b-cap") == {}


async def test_admit_a_round_under_two_busy_limits_starts_once_both_have_room(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """When a-cap frees too, `both` is woken and takes a place in each limit, leaving both
    waiter lists: it is not overtaken in either (no starvation between two limits)."""
    both, next_b, holder_a, holds_a = await _both_blocked_in_turn(service, client, t0)
    assert _release(client, holder_a, holds_a, now=t0 + 70) == 1
    assert not _parked(client, both)
    admission = _admit(client, both, now=t0 + 80)
    assert admission.holds == ("a-cap", "b-cap")
    assert _waiters(client, "a-cap") == {}
    assert _waiters(client, "b-cap") == {next_b: t0 - 4000}
    assert _wait_fields(client, both) == (None, None, None)
    assert stored_task(client, both).waits == ()


async def test_admit_a_waiter_whose_limit_no_longer_covers_it_leaves_that_limit(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A limit re-matched away from a waiting task: its next look drops it from that limit's
    waiters (and from its `waits`), while it keeps waiting where it is still covered."""
    both, _, _, _ = await _both_blocked_in_turn(service, client, t0)
    await service.put_limit("b-cap", match={"tag": "other"}, max_concurrent=1)
    assert _admit(client, both, now=t0 + 60).limit == "a-cap"
    assert both not in _waiters(client, "b-cap")
    assert stored_task(client, both).waits == ("a-cap",)


# ---- queue_release ----------------------------------------------------------------------


async def test_queue_release_frees_the_place_of_the_round(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """After the release the round holds no place in the limit."""
    await _cap(service, 1)
    task_id = await _task_at(service, "acct-a", t0)
    holds = _admit(client, task_id, now=t0).holds
    _release(client, task_id, holds, now=t0 + 100)
    assert _places(client) == {}


async def test_queue_release_with_room_wakes_exactly_the_first_parked_waiter(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The earliest-slot waiter is unparked and due at the release; the next stays parked."""
    await _cap(service, 1)
    holder = await _task_at(service, "acct-h", t0 - 9000)
    holds = _admit(client, holder, now=t0).holds
    second = await _task_at(service, "acct-2", t0 - 1000)
    first = await _task_at(service, "acct-1", t0 - 2000)
    _admit(client, second, now=t0 + 10, park_until=t0 + 70_000)
    _admit(client, first, now=t0 + 20, park_until=t0 + 80_000)
    assert _release(client, holder, holds, now=t0 + 500) == 1
    assert (_parked(client, first), _due(client, first)) == (False, t0 + 500)
    assert (_parked(client, second), _due(client, second)) == (True, t0 + 70_000)
    assert _waiters(client) == {first: t0 - 2000, second: t0 - 1000}
    assert client.lrange(KEYS.wake(), 0, -1) == ["1"]


async def test_queue_release_still_full_after_the_cap_was_lowered_wakes_none(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Cap 2 lowered to 1 with two places held: one release leaves it full, no one is woken."""
    await _cap(service, 2)
    one = await _task_at(service, "acct-1", t0 - 9000)
    two = await _task_at(service, "acct-2", t0 - 8000)
    holds = _admit(client, one, now=t0).holds
    _admit(client, two, now=t0 + 1)
    waiter = await _task_at(service, "acct-w", t0 - 1000)
    _admit(client, waiter, now=t0 + 10, park_until=t0 + 70_000)
    await _cap(service, 1)
    assert _release(client, one, holds, now=t0 + 500) == 0
    assert (_parked(client, waiter), _due(client, waiter)) == (True, t0 + 70_000)
    assert list(_places(client)) == [two]


async def test_queue_release_of_a_deleted_limit_only_frees_the_place(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A round ending after its limit was deleted releases without error, waking nothing."""
    await _cap(service, 1)
    task_id = await _task_at(service, "acct-a", t0)
    holds = _admit(client, task_id, now=t0).holds
    await service.delete_limit(DEV)
    assert _release(client, task_id, holds, now=t0 + 100) == 0
    assert _places(client) == {}


# ---- queue_leave: a Python change ends a wait ----------------------------------------------


async def _two_waiters(d: TaskDispatcher, client: redis.Redis, t0: int) -> tuple[str, str]:
    """Cap 1 held by another round; `first` (earlier slot) and `second` parked behind it."""
    await _cap(d, 1)
    _admit(client, await _task_at(d, "acct-h", t0 - 9000), now=t0)
    first = await _task_at(d, "acct-1", t0 - 2000)
    second = await _task_at(d, "acct-2", t0 - 1000)
    _admit(client, first, now=t0 + 10, park_until=t0 + 70_000)
    _admit(client, second, now=t0 + 20, park_until=t0 + 80_000)
    return first, second


async def test_pause_of_a_parked_task_leaves_the_waiters_and_clears_its_wait(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Pausing a waiter removes it from the limit's waiters and clears its wait fields."""
    first, second = await _two_waiters(service, client, t0)
    await service.pause_task(second)
    assert _waiters(client) == {first: t0 - 2000}
    assert _wait_fields(client, second) == (None, None, None)
    assert _due(client, second) is None


async def test_pause_of_the_head_waiter_wakes_the_next_parked_waiter(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The head leaving may free the place it held back: the next waiter looks again now."""
    first, second = await _two_waiters(service, client, t0)
    before = now_ms()
    await service.pause_task(first)
    after = now_ms()
    assert not _parked(client, second)
    due = _due(client, second)
    assert due is not None and before <= due <= after
    assert _waiters(client) == {second: t0 - 1000}


async def test_pause_of_a_waiter_behind_the_head_wakes_no_one(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A waiter that was not the head held nothing back: the head stays parked."""
    first, second = await _two_waiters(service, client, t0)
    await service.pause_task(second)
    assert (_parked(client, first), _due(client, first)) == (True, t0 + 70_000)


async def test_pause_of_a_task_waiting_for_two_limits_leaves_both(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A wait held in two limits ends in both: the pause takes the task out of each list."""
    await _cap(service, 1, name="a-cap", tag="ta")
    await _cap(service, 1, name="b-cap", tag="tb")
    _admit(client, await _task_at(service, "acct-h", t0 - 9000, tags=("ta", "tb")), now=t0)
    both = await _task_at(service, "acct-both", t0 - 5000, tags=("ta", "tb"))
    _admit(client, both, now=t0 + 10)
    assert stored_task(client, both).waits == ("a-cap", "b-cap")
    await service.pause_task(both)
    assert _waiters(client, "a-cap") == _waiters(client, "b-cap") == {}
    assert stored_task(client, both).waits == ()


async def test_delete_of_a_parked_task_leaves_the_waiters(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A deleted waiter is no longer queued for the limit."""
    first, second = await _two_waiters(service, client, t0)
    await service.delete_task(second)
    assert _waiters(client) == {first: t0 - 2000}


async def test_patch_of_the_tags_of_a_parked_task_ends_its_wait_due_at_its_slot(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """New tags may change its limits: the wait ends and the slot is due again at its start."""
    _, second = await _two_waiters(service, client, t0)
    await service.update_task(second, TaskChange(tags=["other"]))
    assert second not in _waiters(client)
    assert _wait_fields(client, second) == (None, None, None)
    assert _due(client, second) == t0 - 1000


async def test_patch_of_an_unrelated_field_of_a_parked_task_keeps_its_wait(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Renaming the account changes nothing about the wait nor the park deadline."""
    first, second = await _two_waiters(service, client, t0)
    await service.update_task(second, TaskChange(account_name="renamed"))
    assert _waiters(client) == {first: t0 - 2000, second: t0 - 1000}
    assert _wait_fields(client, second) == (DEV, "limit_full", None)
    assert _due(client, second) == t0 + 80_000


# ---- store / service: saving and deleting limits -----------------------------------------


async def test_put_limit_bumps_the_limits_version(
    client: redis.Redis, service: TaskDispatcher
) -> None:
    """Every save increments limits_version, so workers' books go stale."""
    await _cap(service, 1)
    first = int(client.get(KEYS.limits_version()) or 0)
    await _cap(service, 1)
    assert int(client.get(KEYS.limits_version()) or 0) == first + 1


async def test_put_limit_stores_the_definition_as_json(
    client: redis.Redis, service: TaskDispatcher, clock: Clock
) -> None:
    """The limits hash holds the definition under its name, created and updated by the clock."""
    await service.put_limit(DEV, match={"tag": DEV}, max_concurrent=3)
    clock.at_ms += 5000
    await service.put_limit(DEV, match={"tag": DEV}, max_concurrent=4)
    stored = Limit.from_json(DEV, str(client.hget(KEYS.limits(), DEV)))
    assert stored == Limit(
        DEV,
        Match(tag=DEV),
        max_concurrent=4,
        created_ms=clock.at_ms - 5000,
        updated_ms=clock.at_ms,
    )


async def test_put_limit_with_no_free_place_wakes_no_waiter(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Saving the same full limit again wakes none of its waiters."""
    first, second = await _two_waiters(service, client, t0)
    await _cap(service, 1)
    assert _parked(client, first) and _parked(client, second)


async def test_put_limit_raising_max_concurrent_wakes_as_many_waiters_as_new_places(
    client: redis.Redis, service: TaskDispatcher, t0: int, clock: Clock
) -> None:
    """Cap 1 -> 3 with one place held: the two earliest of three waiters are woken."""
    first, second = await _two_waiters(service, client, t0)
    third = await _task_at(service, "acct-3", t0 - 500)
    _admit(client, third, now=t0 + 30, park_until=t0 + 90_000)
    clock.at_ms = t0 + 1000
    await _cap(service, 3)
    assert [_parked(client, t) for t in (first, second, third)] == [False, False, True]
    assert (_due(client, first), _due(client, second), _due(client, third)) == (
        t0 + 1000,
        t0 + 1000,
        t0 + 90_000,
    )


async def test_put_limit_wakes_at_most_its_waiters(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """Raising the cap far above the demand wakes each waiter once, and no error."""
    first, second = await _two_waiters(service, client, t0)
    await _cap(service, 100)
    assert not _parked(client, first) and not _parked(client, second)


async def test_delete_limit_wakes_every_waiter(
    client: redis.Redis, service: TaskDispatcher, t0: int, clock: Clock
) -> None:
    """Nothing holds the waiters back any more: all are due at the deletion."""
    first, second = await _two_waiters(service, client, t0)
    clock.at_ms = t0 + 2000
    await service.delete_limit(DEV)
    assert (_parked(client, first), _due(client, first)) == (False, t0 + 2000)
    assert (_parked(client, second), _due(client, second)) == (False, t0 + 2000)


async def test_delete_limit_removes_its_definition_and_its_keys(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The definition, its places, starts and waiters are gone; the version is bumped."""
    await service.put_limit(DEV, match={"tag": DEV}, max_concurrent=1, max_starts=5, per_s=60)
    _admit(client, await _task_at(service, "acct-h", t0 - 9000), now=t0)
    _admit(client, await _task_at(service, "acct-w", t0 - 1000), now=t0 + 10)
    version = int(client.get(KEYS.limits_version()) or 0)
    await service.delete_limit(DEV)
    assert client.hget(KEYS.limits(), DEV) is None
    assert not client.exists(
        KEYS.limit_places(DEV), KEYS.limit_starts(DEV), KEYS.limit_waiters(DEV)
    )
    assert int(client.get(KEYS.limits_version()) or 0) == version + 1


async def test_a_woken_waiter_of_a_deleted_limit_is_admitted_and_its_wait_cleared(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """After the deletion the waiter's next admission takes nothing and clears its wait."""
    first, _ = await _two_waiters(service, client, t0)
    await service.delete_limit(DEV)
    admission = _admit(client, first, now=t0 + 3000)
    assert (admission.admitted, admission.holds) == (True, ())
    assert _wait_fields(client, first) == (None, None, None)


async def test_list_tasks_by_tag_lists_the_tasks_carrying_it(
    service: TaskDispatcher, t0: int, clock: Clock
) -> None:
    """The tag index answers exactly the tagged tasks, in creation order, with the total."""
    tagged = []
    for i in range(3):
        clock.at_ms += 1  # distinct creation instants: the index's order
        tagged.append(await _task_at(service, f"acct-{i}", t0, tags=("x", "y")))
    await _task_at(service, "acct-other", t0, tags=("y",))
    total, page = await service.list_tasks(tag="x", limit=2)
    assert total == 3
    assert [t.task_id for t in page] == tagged[:2]


# ---- RoundRunner, recovery and the lease, end to end in this process --------------------


def _runner(
    url: str, runners: list[tuple[RoundRunner, redis.Redis]], handler: Any
) -> tuple[RoundRunner, redis.Redis]:
    pair = runner_for(url, handler)
    runners.append(pair)
    return pair


async def test_round_of_a_covered_task_holds_a_place_while_its_handler_runs(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """Inside the handler the round's task holds the limit's one place."""
    await _cap(service, 1)
    task_id = await _task_at(service, "acct-a", t0)
    seen: dict[str, Any] = {}

    def handler(ctx: RunContext) -> None:
        seen["places"] = list(_places(client))
        seen["holds"] = stored_task(client, task_id).holds

    run, run_client = _runner(redis_url, runners, handler)
    assert run.run(message_for(run_client, task_id))["outcome"] == "ok"
    assert seen == {"places": [task_id], "holds": (DEV,)}


async def test_round_of_a_covered_task_frees_its_place_when_it_ends(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """After the round no place is held and the task no longer names it in holds."""
    await _cap(service, 1)
    task_id = await _task_at(service, "acct-a", t0)
    run, run_client = _runner(redis_url, runners, lambda ctx: None)
    run.run(message_for(run_client, task_id))
    assert _places(client) == {}
    assert stored_task(client, task_id).holds == ()


async def test_round_of_a_covered_task_failing_frees_its_place(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """A handler that raises still releases the place."""
    await _cap(service, 1)
    task_id = await _task_at(service, "acct-a", t0)

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("flaky")

    run, run_client = _runner(redis_url, runners, boom)
    assert run.run(message_for(run_client, task_id))["outcome"] == "failed"
    assert _places(client) == {}


async def test_round_while_the_limit_is_full_is_waiting_and_runs_nothing(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """B's round during A's (cap 1) answers outcome "waiting" naming the limit; B stays pending."""
    await _cap(service, 1)
    a = await _task_at(service, "acct-a", t0 - 2000)
    b = await _task_at(service, "acct-b", t0 - 1000)
    seen: dict[str, Any] = {}

    def handler(ctx: RunContext) -> None:
        if ctx.task_id == a:
            seen["b"] = run.run(message_for(run_client, b))

    run, run_client = _runner(redis_url, runners, handler)
    run.run(message_for(run_client, a))
    assert seen["b"] == {"outcome": "waiting", "reason": "limit_full", "limit": DEV}
    task = stored_task(client, b)
    assert (task.status, task.round_num, task.next_ms) == (TaskStatus.PENDING, 0, t0 - 1000)


async def test_round_waiting_for_a_place_is_woken_when_the_holder_ends(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """While A runs B is parked; A's end makes B due now, and B's round then runs."""
    await _cap(service, 1)
    a = await _task_at(service, "acct-a", t0 - 2000)
    b = await _task_at(service, "acct-b", t0 - 1000)
    seen: dict[str, Any] = {}

    def handler(ctx: RunContext) -> None:
        if ctx.task_id == a:
            run.run(message_for(run_client, b))
            seen["parked"] = _parked(client, b)

    run, run_client = _runner(redis_url, runners, handler)
    run.run(message_for(run_client, a))
    after = now_ms()
    assert seen["parked"]
    due = _due(client, b)
    assert not _parked(client, b) and due is not None and due <= after
    assert run.run(message_for(run_client, b))["outcome"] == "ok"


async def test_round_of_a_task_deleted_while_it_runs_frees_its_place_when_it_ends(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int, runners: Any
) -> None:
    """The round ends (its task gone): its place is freed and the next waiter woken."""
    await _cap(service, 1)
    a = await _task_at(service, "acct-a", t0 - 2000)
    b = await _task_at(service, "acct-b", t0 - 1000)

    def handler(ctx: RunContext) -> None:
        if ctx.task_id == a:
            run.run(message_for(run_client, b))  # parked behind A
            # DELETE /tasks/{a} meanwhile (the service's write, in its sync flavour).
            transact(run_client, KEYS, a, lambda read: Change(None))

    run, run_client = _runner(redis_url, runners, handler)
    run.run(message_for(run_client, a))
    assert a not in _places(client)
    assert not _parked(client, b)


def _started(client: redis.Redis, task_id: str, holds: tuple[str, ...], *, now: int) -> None:
    """What a round's start writes (rounds.RoundRunner._start): running, holding `holds`."""

    def plan(read: Read) -> Change:
        assert read.task is not None
        running = lifecycle.started(read.task, run_id="run-1", worker="w1", now_ms=now, holds=holds)
        return Change(running, lambda pipe: pipe.zadd(KEYS.running(), {task_id: now + TTL_MS}))

    transact(client, KEYS, task_id, plan)


async def _lost_round(
    redis_url: str, client: redis.Redis, d: TaskDispatcher, t0: int
) -> tuple[str, str, int]:
    """A round of A admitted and started at t0 whose worker died (its lease expired), and B
    parked behind it; returns (A, B, an instant after the lease's expiry)."""
    await _cap(d, 1)
    a = await _task_at(d, "acct-a", t0 - 2000)
    holds = _admit(client, a, now=t0).holds
    _started(client, a, holds, now=t0)
    b = await _task_at(d, "acct-b", t0 - 1000)
    _admit(client, b, now=t0 + 10, park_until=t0 + 70_000)
    client.delete(KEYS.lock("acct-a"))  # the lease expired: nobody renewed it
    return a, b, t0 + TTL_MS + 1


async def test_recovery_of_a_lost_round_frees_its_place(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The housekeeper declares the round lost and releases its place."""
    a, _, later = await _lost_round(redis_url, client, service, t0)
    keeper = Housekeeper(
        client, Settings(redis_url=redis_url, key_prefix="td:"), clock=lambda: later
    )
    assert housekeep(keeper) == (1, 0)
    assert _places(client) == {}
    assert stored_task(client, a).holds == ()


async def test_recovery_of_a_lost_round_wakes_the_next_waiter(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """The waiter parked behind the lost round is due at the recovery."""
    _, b, later = await _lost_round(redis_url, client, service, t0)
    keeper = Housekeeper(
        client, Settings(redis_url=redis_url, key_prefix="td:"), clock=lambda: later
    )
    housekeep(keeper)
    assert (_parked(client, b), _due(client, b)) == (False, later)


async def test_recovery_of_a_round_whose_lease_is_alive_keeps_its_place(
    redis_url: str, client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A holder that still has its lease keeps its place and its waiter stays parked."""
    await _cap(service, 1)
    a = await _task_at(service, "acct-a", t0 - 2000)
    holds = _admit(client, a, now=t0).holds
    _started(client, a, holds, now=t0)
    b = await _task_at(service, "acct-b", t0 - 1000)
    _admit(client, b, now=t0 + 10)
    keeper = Housekeeper(
        client, Settings(redis_url=redis_url, key_prefix="td:"), clock=lambda: t0 + TTL_MS + 1
    )
    assert housekeep(keeper) == (0, 0)
    assert list(_places(client)) == [a]
    assert _parked(client, b)


RENEW_TTL_MS = 3000
# The lease's clock, far from t0: a renewed score cannot be mistaken for the admitted one.
RENEW_CLOCK_MS = 10**13


async def _renewing(
    client: redis.Redis, d: TaskDispatcher, t0: int
) -> tuple[str, AccountLease, list[str]]:
    """A round of A admitted under limit dev, its lease renewing on a stopped clock."""
    await _cap(d, 1)
    a = await _task_at(d, "acct-a", t0)
    lease = AccountLease(
        client,
        lock_key=KEYS.lock("acct-a"),
        task_key=KEYS.task(a),
        running_key=KEYS.running(),
        task_id=a,
        ttl_ms=RENEW_TTL_MS,
        clock_ms=lambda: RENEW_CLOCK_MS,
    )
    sent_s = time.monotonic()
    admission = _admit(client, a, now=t0, lease_token=lease.token, lease_ttl_ms=RENEW_TTL_MS)
    lease.taken(sent_s=sent_s, place_keys=[KEYS.limit_places(n) for n in admission.holds])
    client.zadd(KEYS.running(), {a: 1})  # renewals push it: it tells that one happened
    lost: list[str] = []
    lease.start_renewing(on_lost=lost.append)
    return a, lease, lost


async def test_lease_renewal_extends_the_places_of_the_round(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A renewal pushes each place the round holds to the lease's new expiry."""
    a, lease, lost = await _renewing(client, service, t0)
    expiry = RENEW_CLOCK_MS + RENEW_TTL_MS
    try:
        assert _places(client) == {a: t0 + RENEW_TTL_MS}
        wait_until(lambda: _places(client).get(a) == expiry, 10, 0.02, "the place renewed")
    finally:
        lease.release()
    assert lost == []


async def test_lease_renewal_does_not_bring_back_a_released_place(
    client: redis.Redis, service: TaskDispatcher, t0: int
) -> None:
    """A place released meanwhile is not re-added by the renewal (only existing ones move)."""
    a, lease, lost = await _renewing(client, service, t0)
    client.zrem(KEYS.limit_places(DEV), a)
    expiry = RENEW_CLOCK_MS + RENEW_TTL_MS
    try:
        wait_until(lambda: client.zscore(KEYS.running(), a) == expiry, 10, 0.02, "a renewal")
    finally:
        lease.release()
    assert _places(client) == {}
    assert lost == []
