"""Specification of taskdispatch.engine.notifier: intake, grouping, flush, claim and record.

A real Redis (the scripts use Lua and cjson, the intake a consumer group): events come from
the real write path (`write.queue_task_write` emits `task.error` / `task.recovered`), or are
added to the stream as the watcher adds them. Sending goes to a local receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskdispatch.domain import lifecycle
from taskdispatch.domain.bodies import TaskSpec
from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.engine.conditions import watch_conditions
from taskdispatch.engine.notifier import GROUP, TASKS_LISTED, Answer, Notifier, NotifyLoop
from taskdispatch.engine.notify_formats import signature
from taskdispatch.settings import Settings
from taskdispatch.store.events import queue_event
from taskdispatch.store.keys import Keys
from taskdispatch.store.notifications import Notification, NotifyMatch
from taskdispatch.store.scripts import NOTIFIER_CLAIM, NOTIFIER_LEAD
from taskdispatch.store.write import queue_task_write
from tests.support.receiver import Receiver

KEYS = Keys("tdtest:")
# Far enough ahead that every grouping window of these tests has closed.
LATER_MS = 10 * 60_000


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=KEYS.prefix,
        notify_claim_s=2.0,
        notify_backoff_s=1.0,
        notify_retry_for_s=60.0,
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    c.xgroup_create(KEYS.events(), GROUP, id="$", mkstream=True)
    yield c
    c.close()


@pytest.fixture
def notifier(client: redis.Redis, settings: Settings) -> Iterator[Notifier]:
    n = Notifier(client, settings)
    yield n
    n.close()


def define(client: redis.Redis, name: str, url: str = "http://127.0.0.1:9/", **fields: Any) -> None:
    fields.setdefault("events", ("task.error", "task.recovered"))
    fields.setdefault("group_window_s", 0)
    client.hset(KEYS.notifications(), name, Notification(name=name, url=url, **fields).to_json())


def make_task(n: int, **overrides: Any) -> Task:
    body = {
        "sys_type": "mac_intel",
        "xhs_account_id": f"acct-{n}",
        "xhs_account_name": f"账号{n}",
        "interval": 3600,
        "valid_time_range": [0, 24],
    }
    task = lifecycle.created(
        TaskSpec.model_validate(body),
        task_id=f"task-{n}",
        now_ms=now_ms(),
        default_timezone="Asia/Shanghai",
        task_types={"xhs_type"},
    )
    return task.evolve(**overrides)


def write(client: redis.Redis, old: Task | None, new: Task | None) -> None:
    with client.pipeline(transaction=True) as pipe:
        queue_task_write(pipe, KEYS, old, new)
        pipe.execute()


def to_error(client: redis.Redis, *ns: int, **overrides: Any) -> list[Task]:
    """Store tasks `ns` pending, then move each to error (one `task.error` event each)."""
    errored = []
    for n in ns:
        task = make_task(n, **overrides)
        write(client, None, task)
        failed = task.evolve(status=TaskStatus.ERROR, next_ms=None, last_error=f"boom {n}")
        write(client, task, failed)
        errored.append(failed)
    return errored


def recover(client: redis.Redis, task: Task) -> Task:
    resumed = task.evolve(status=TaskStatus.PENDING, next_ms=now_ms() + 3_600_000)
    write(client, task, resumed)
    return resumed


def add_event(client: redis.Redis, kind: str, **data: Any) -> None:
    with client.pipeline(transaction=True) as pipe:
        queue_event(pipe, KEYS, kind, **data)
        pipe.execute()


def cycle(notifier: Notifier, client: redis.Redis) -> list[dict[str, Any]]:
    """Intake, then flush every closed window (a window of 0 s closes at its first event);
    the deliveries waiting."""
    at = now_ms()
    notifier.intake()
    notifier.flush(client.zrangebyscore(KEYS.notify_windows(), "-inf", at), now_ms=at)
    return deliveries(client)


def deliveries(client: redis.Redis) -> list[dict[str, Any]]:
    found = []
    for delivery_id in client.zrange(KEYS.notify_due(), 0, -1):
        fields: dict[str, Any] = client.hgetall(KEYS.notify_delivery(delivery_id))
        found.append({**fields, "id": delivery_id, "tasks": json.loads(fields["tasks"])})
    return found


def look(client: redis.Redis, settings: Settings, at_ms: int) -> None:
    """One look of the condition watcher at `at_ms` (its period over)."""
    client.delete(KEYS.notify_watch_lock())
    watch_conditions(client, KEYS, settings, now_ms=at_ms)


def clear_deliveries(client: redis.Redis) -> None:
    for delivery_id in client.zrange(KEYS.notify_due(), 0, -1):
        client.delete(KEYS.notify_delivery(delivery_id))
    client.delete(KEYS.notify_due())


# ---- intake and grouping --------------------------------------------------------------------


def test_intake_tasks_entering_error_together_make_one_delivery_naming_each(
    client: redis.Redis, notifier: Notifier
) -> None:
    """Three task.error events in one window become one delivery of count 3 listing them."""
    define(client, "ops")
    to_error(client, 1, 2, 3)
    [delivery] = cycle(notifier, client)
    assert (delivery["name"], delivery["event"], delivery["count"]) == ("ops", "task.error", "3")
    listed = {(t["account_id"], t["last_error"], t["status"]) for t in delivery["tasks"]}
    assert listed == {(f"acct-{n}", f"boom {n}", "error") for n in (1, 2, 3)}


def test_intake_same_condition_again_while_open_is_dropped(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A second task.error of a task whose error was announced and not recovered is dropped."""
    define(client, "ops", events=("task.error",))
    [task] = to_error(client, 1)
    assert len(cycle(notifier, client)) == 1
    clear_deliveries(client)
    add_event(client, "task.error", task_id=task.task_id, account_id=task.account_id)
    assert cycle(notifier, client) == []


def test_intake_condition_after_its_recovery_is_announced_again(
    client: redis.Redis, notifier: Notifier
) -> None:
    """error, recovered, error: three deliveries (the recovery closed the first error)."""
    define(client, "ops")
    [task] = to_error(client, 1)
    kinds = [d["event"] for d in cycle(notifier, client)]
    clear_deliveries(client)
    resumed = recover(client, task)
    kinds += [d["event"] for d in cycle(notifier, client)]
    clear_deliveries(client)
    write(client, resumed, resumed.evolve(status=TaskStatus.ERROR, last_error="again"))
    kinds += [d["event"] for d in cycle(notifier, client)]
    assert kinds == ["task.error", "task.recovered", "task.error"]


def test_intake_recovery_of_an_error_only_asked_for_still_reopens(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A notification asking for task.error only: the recovery, not sent, still closes it."""
    define(client, "ops", events=("task.error",))
    [task] = to_error(client, 1)
    cycle(notifier, client)
    clear_deliveries(client)
    resumed = recover(client, task)
    assert cycle(notifier, client) == []
    write(client, resumed, resumed.evolve(status=TaskStatus.ERROR, last_error="again"))
    assert [d["event"] for d in cycle(notifier, client)] == ["task.error"]


def test_intake_recovery_never_announced_is_dropped(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A task.recovered whose error the notification never announced is not sent."""
    [task] = to_error(client, 1)
    define(client, "ops")  # defined after the error: it never announced it
    client.xgroup_setid(KEYS.events(), GROUP, "$")  # as the first notification's PUT does
    recover(client, task)
    assert cycle(notifier, client) == []


def test_intake_recovery_alone_asked_for_is_sent(client: redis.Redis, notifier: Notifier) -> None:
    """A notification asking only for task.recovered gets every recovery."""
    [task] = to_error(client, 1)
    define(client, "ops", events=("task.recovered",))
    client.xgroup_setid(KEYS.events(), GROUP, "$")
    recover(client, task)
    assert [d["event"] for d in cycle(notifier, client)] == ["task.recovered"]


def test_intake_task_deleted_ends_its_conditions(client: redis.Redis, notifier: Notifier) -> None:
    """A deleted task's open error is closed: a task of the same id errs anew, announced."""
    define(client, "ops")
    [task] = to_error(client, 1)
    cycle(notifier, client)
    clear_deliveries(client)
    write(client, task, None)
    assert cycle(notifier, client) == []
    assert client.smembers(KEYS.notify_open("ops")) == set()
    to_error(client, 1)
    assert [d["event"] for d in cycle(notifier, client)] == ["task.error"]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param(NotifyMatch(), {"acct-1", "acct-2", "acct-3"}, id="none"),
        pytest.param(NotifyMatch(tags=("team:a", "x")), {"acct-1", "acct-2"}, id="tags-any"),
        pytest.param(NotifyMatch(queue="dev-b"), {"acct-3"}, id="queue"),
        pytest.param(NotifyMatch(tags=("team:a",), queue="dev-b"), set(), id="both"),
        pytest.param(NotifyMatch(queue="celery"), {"acct-1"}, id="default-queue"),
    ],
)
def test_intake_match_narrows_to_tasks_with_a_tag_or_on_the_queue(
    client: redis.Redis, notifier: Notifier, match: NotifyMatch, expected: set[str]
) -> None:
    """Tags match any of them; the queue is the task's routed queue (routing.queue_of)."""
    define(client, "ops", match=match)
    to_error(client, 1, tags=("team:a",))
    to_error(client, 2, tags=("team:a", "team:b"), queue="dev-a")
    to_error(client, 3, queue="dev-b")
    found = cycle(notifier, client)
    assert {t["account_id"] for d in found for t in d["tasks"]} == expected


def test_intake_overdue_below_a_notifications_threshold_is_not_its_alert(
    client: redis.Redis, notifier: Notifier
) -> None:
    """task.overdue of 400 s goes to the notification with 300 s, not to the one with 600 s."""
    events = ("task.overdue", "task.caught_up")
    define(client, "fast", events=events, overdue_after_s=300)
    define(client, "slow", events=events, overdue_after_s=600)
    write(client, None, make_task(1))
    add_event(client, "task.overdue", task_id="task-1", account_id="acct-1", overdue_s=400)
    [delivery] = cycle(notifier, client)
    assert delivery["name"] == "fast"
    assert delivery["tasks"][0]["overdue_s"] == 400


def test_intake_overdue_reaches_each_notification_from_its_own_threshold_on(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """Watcher and intake, thresholds 60 s and 300 s: a task 120 s late reaches the first
    only; 310 s late, the second too and not the first again; once its round started,
    task.caught_up reaches both."""
    events = ("task.overdue", "task.caught_up")
    define(client, "fast", events=events, overdue_after_s=60)
    define(client, "slow", events=events, overdue_after_s=300)
    slot_ms = now_ms()
    task = make_task(1, next_ms=slot_ms)
    write(client, None, task)
    sent = []
    for late_s in (120, 310, 320):
        look(client, settings, slot_ms + late_s * 1000)
        sent.append(
            sorted((d["name"], d["tasks"][0]["overdue_s"]) for d in cycle(notifier, client))
        )
        clear_deliveries(client)
    assert sent == [[("fast", 120)], [("slow", 310)], []]
    write(client, task, task.evolve(status=TaskStatus.RUNNING, run_id="run-1"))
    look(client, settings, slot_ms + 330_000)
    caught_up = sorted((d["name"], d["event"]) for d in cycle(notifier, client))
    assert caught_up == [("fast", "task.caught_up"), ("slow", "task.caught_up")]
    assert not client.exists(KEYS.notify_open("fast"), KEYS.notify_open("slow"))


def test_intake_fleet_events_list_their_subjects(client: redis.Redis, notifier: Notifier) -> None:
    """queue.unserved lists its queue; a queue match keeps only its own queue's events."""
    define(client, "all", events=("queue.unserved", "beat.down"))
    define(client, "mine", events=("queue.unserved",), match=NotifyMatch(queue="dev-a"))
    add_event(client, "queue.unserved", queue="dev-a", messages=4)
    add_event(client, "queue.unserved", queue="dev-b", messages=1)
    add_event(client, "beat.down")
    found = {(d["name"], d["event"]): d for d in cycle(notifier, client)}
    assert sorted(found) == [
        ("all", "beat.down"),
        ("all", "queue.unserved"),
        ("mine", "queue.unserved"),
    ]
    assert {e["subject"] for e in found[("all", "queue.unserved")]["tasks"]} == {"dev-a", "dev-b"}
    assert [e["messages"] for e in found[("mine", "queue.unserved")]["tasks"]] == [4]


def test_intake_events_of_another_kind_are_acknowledged_and_ignored(
    client: redis.Redis, notifier: Notifier
) -> None:
    """task.created / task.updated leave no group and nothing pending in the consumer group."""
    define(client, "ops")
    write(client, None, make_task(1))
    assert cycle(notifier, client) == []
    assert client.xpending(KEYS.events(), GROUP)["pending"] == 0


def test_intake_second_process_takes_nothing_while_the_first_holds_the_lock(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """Only the intake lock's holder reads the stream; the other takes 0 entries."""
    define(client, "ops")
    other = Notifier(client, settings)
    assert notifier.intake() == 0  # takes the lock (nothing new yet)
    to_error(client, 1)
    assert other.intake() == 0
    assert notifier.intake() > 0


def test_intake_entries_a_dead_holder_read_are_taken_by_the_next(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """A holder that read a batch and died before acknowledging it: the next holder, once the
    lock expired, takes that batch (no event lost)."""
    define(client, "ops")
    dead = Notifier(client, settings)
    assert NOTIFIER_LEAD(client, keys=[KEYS.notify_intake_lock()], args=[dead.token, 60_000])
    to_error(client, 1)
    assert dead._read()  # read, then it died before acknowledging
    client.delete(KEYS.notify_intake_lock())  # its lock expired
    [delivery] = cycle(notifier, client)
    assert delivery["event"] == "task.error"
    assert client.xpending(KEYS.events(), GROUP)["pending"] == 0


def test_intake_batch_of_a_holder_that_lost_the_lock_is_not_written(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """A holder whose lock another process took meanwhile writes nothing (fenced)."""
    define(client, "ops")
    to_error(client, 1)
    stale = Notifier(client, settings)
    assert NOTIFIER_LEAD(client, keys=[KEYS.notify_intake_lock()], args=[stale.token, 10_000])
    entries = stale._read()
    client.set(KEYS.notify_intake_lock(), notifier.token)  # taken over
    assert stale._take(entries) is False
    assert client.zcard(KEYS.notify_windows()) == 0


def test_intake_without_group_creates_it_from_now(client: redis.Redis, notifier: Notifier) -> None:
    """After a Redis that lost its data: the group is created again, later events are taken."""
    define(client, "ops")
    client.xgroup_destroy(KEYS.events(), GROUP)
    to_error(client, 1)
    assert notifier.intake() == 0
    to_error(client, 2)
    assert [t["account_id"] for d in cycle(notifier, client) for t in d["tasks"]] == ["acct-2"]


# ---- flush ---------------------------------------------------------------------------------


def test_flush_window_not_closed_makes_nothing_yet(client: redis.Redis, notifier: Notifier) -> None:
    """Events keep gathering until group_window_s after the first one."""
    define(client, "ops", group_window_s=30)
    to_error(client, 1)
    notifier.intake()
    windows = client.zrange(KEYS.notify_windows(), 0, -1)
    assert notifier.flush(windows, now_ms=now_ms()) == 0
    assert notifier.flush(windows, now_ms=now_ms() + 31_000) == 1


def test_flush_same_window_twice_makes_one_delivery(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """Two processes flushing the same closed window: exactly one delivery."""
    define(client, "ops")
    to_error(client, 1, 2)
    at = now_ms() + LATER_MS
    notifier.intake()
    windows = client.zrange(KEYS.notify_windows(), 0, -1)
    other = Notifier(client, settings)
    assert notifier.flush(windows, now_ms=at) + other.flush(windows, now_ms=at) == 1
    assert len(deliveries(client)) == 1


def test_flush_lists_at_most_the_cap_and_counts_all(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A group of 60 tasks: 50 of them listed, count 60."""
    define(client, "ops", events=("task.error",))
    for n in range(60):
        add_event(client, "task.error", task_id=f"task-{n}", account_id=f"acct-{n}")
    [delivery] = cycle(notifier, client)
    assert delivery["count"] == "60"
    listed = {t["account_id"] for t in delivery["tasks"]}
    assert len(listed) == TASKS_LISTED and listed <= {f"acct-{n}" for n in range(60)}


# ---- send ----------------------------------------------------------------------------------


def test_send_delivers_signed_json_once_and_records_it(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A delivery is POSTed with its id and a verifiable signature, then recorded and gone."""
    with Receiver() as receiver:
        define(client, "ops", url=receiver.url, secret="s3cret")
        to_error(client, 1)
        [delivery] = cycle(notifier, client)
        assert notifier.send([delivery["id"]], now_ms=now_ms()) == 1
        [got] = receiver.received()
    assert got.delivery_id == delivery["id"] and got.event == "task.error"
    assert got.headers["x-taskdispatch-signature"] == signature("s3cret", got.body)
    assert got.json()["tasks"][0]["account_id"] == "acct-1"
    assert deliveries(client) == []
    [recent] = client.lrange(KEYS.notify_recent("ops"), 0, -1)
    assert json.loads(recent)["outcome"] == "delivered"
    assert client.hgetall(KEYS.notify_stats()) == {"delivered|ops": "1"}


def test_send_failure_is_due_again_after_backoff_with_the_same_id(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A 503 leaves the delivery due after notify_backoff_s; the retry carries the same id."""
    with Receiver() as receiver:
        receiver.fail_next(503)
        define(client, "ops", url=receiver.url)
        to_error(client, 1)
        [delivery] = cycle(notifier, client)
        before = now_ms()
        notifier.send([delivery["id"]], now_ms=before)
        due = client.zscore(KEYS.notify_due(), delivery["id"])
        assert due is not None and before + 1000 <= due <= now_ms() + 1000
        assert notifier.send([delivery["id"]], now_ms=now_ms()) == 0  # not due yet
        notifier.send([delivery["id"]], now_ms=int(due))
        statuses = [(r.status, r.delivery_id) for r in receiver.received()]
    assert statuses == [(503, delivery["id"]), (200, delivery["id"])]
    attempts = [json.loads(x) for x in client.lrange(KEYS.notify_recent("ops"), 0, -1)]
    assert [(a["outcome"], a["attempts"], a["status_code"]) for a in attempts] == [
        ("delivered", 2, 200),
        ("retrying", 1, 503),
    ]


def test_send_failing_past_retry_for_is_given_up_and_counted(
    client: redis.Redis, notifier: Notifier
) -> None:
    """A failure more than notify_retry_for_s after the first attempt gives the delivery up."""
    with Receiver() as receiver:
        receiver.fail_next(500)
        define(client, "ops", url=receiver.url)
        to_error(client, 1)
        [delivery] = cycle(notifier, client)
        # Its first attempt was 61 s ago (notify_retry_for_s is 60).
        client.hset(KEYS.notify_delivery(delivery["id"]), "first_try_ms", now_ms() - 61_000)
        notifier.send([delivery["id"]], now_ms=now_ms())
    assert deliveries(client) == []
    assert json.loads(client.lindex(KEYS.notify_recent("ops"), 0))["outcome"] == "given_up"
    assert client.hgetall(KEYS.notify_stats()) == {"given_up|ops": "1"}


def test_send_claimed_delivery_is_not_claimed_again_until_the_claim_expires(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """The claim moves the due time notify_claim_s ahead: another sender skips it until then."""
    define(client, "ops")
    to_error(client, 1)
    [delivery] = cycle(notifier, client)
    at = now_ms()
    keys = [KEYS.notify_due(), KEYS.notify_delivery(delivery["id"])]
    first = NOTIFIER_CLAIM(client, keys=keys, args=[at, 2000, notifier.token, delivery["id"]])
    other = Notifier(client, settings)
    assert (
        NOTIFIER_CLAIM(client, keys=keys, args=[at + 1999, 2000, other.token, delivery["id"]]) == []
    )
    again = NOTIFIER_CLAIM(client, keys=keys, args=[at + 2000, 2000, other.token, delivery["id"]])
    assert first[0] == again[0] == delivery["id"]


def test_send_stale_sender_cannot_record_a_failure_over_the_new_claim(
    client: redis.Redis, settings: Settings, notifier: Notifier
) -> None:
    """A sender whose claim was taken over cannot reschedule the delivery; a success by the
    new holder is then recorded once, and a late success by the old one is not counted."""
    with Receiver() as receiver:
        define(client, "ops", url=receiver.url)
        to_error(client, 1)
        [delivery] = cycle(notifier, client)
        delivery_id = delivery["id"]
        keys = [KEYS.notify_due(), KEYS.notify_delivery(delivery_id)]
        at = now_ms()
        [_, raw] = NOTIFIER_CLAIM(client, keys=keys, args=[at, 1, notifier.token, delivery_id])
        fields = dict(zip(raw[::2], raw[1::2], strict=True))
        other = Notifier(client, settings)
        assert other.send([delivery_id], now_ms=at + 2) == 1  # takes over, delivers
        notifier._after(delivery_id, fields, Answer(503), "HTTP 503")
        notifier._after(delivery_id, fields, Answer(200), None)
    assert client.hgetall(KEYS.notify_stats()) == {"delivered|ops": "1"}
    assert client.zscore(KEYS.notify_due(), delivery_id) is None


def test_send_delivery_of_a_deleted_notification_is_dropped(
    client: redis.Redis, notifier: Notifier
) -> None:
    """Its notification gone, a delivery is dropped unsent and unrecorded."""
    define(client, "ops")
    to_error(client, 1)
    [delivery] = cycle(notifier, client)
    client.hdel(KEYS.notifications(), "ops")
    assert notifier.send([delivery["id"]], now_ms=now_ms()) == 0
    assert deliveries(client) == [] and client.llen(KEYS.notify_recent("ops")) == 0


def test_send_redirect_is_not_followed(client: redis.Redis, notifier: Notifier) -> None:
    """A 302 from the receiver is a failed attempt; its Location is never requested."""
    with Receiver() as target, Receiver() as receiver:
        receiver.fail_next(302)
        define(client, "ops", url=receiver.url)
        to_error(client, 1)
        [delivery] = cycle(notifier, client)
        notifier.send([delivery["id"]], now_ms=now_ms())
        assert target.received() == []
    assert json.loads(client.lindex(KEYS.notify_recent("ops"), 0))["status_code"] == 302


# ---- the loop ------------------------------------------------------------------------------


def test_loop_iteration_takes_flushes_and_sends(client: redis.Redis, settings: Settings) -> None:
    """One run_once with a window of 0 s: the event is taken in, flushed and delivered."""
    loop = NotifyLoop(settings, redis=client)
    with Receiver() as receiver:
        define(client, "ops", url=receiver.url)
        to_error(client, 1)
        loop.run_once(now_ms=now_ms())
        loop.stop()
        assert [r.event for r in receiver.delivered()] == ["task.error"]


def test_loop_without_notifications_reads_no_event(client: redis.Redis, settings: Settings) -> None:
    """No notification defined: the intake leaves the stream alone (nothing pending, no lock)."""
    to_error(client, 1)
    loop = NotifyLoop(settings, redis=client)
    loop.run_once(now_ms=now_ms())
    loop.stop()
    assert client.exists(KEYS.notify_intake_lock()) == 0
    assert client.xinfo_groups(KEYS.events())[0]["last-delivered-id"] == "0-0"
