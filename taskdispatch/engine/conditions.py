"""The condition watcher: the first stage of the alerts, which turns states into events.

A failed round is an event the moment it happens; "this task is five minutes late", "no
beat is alive" or "nobody consumes queue dev-c" are conditions: nothing is written when
they begin, they just hold. Once per `notify_watch_every_s` across the fleet (every beat
and API process tries; the one that takes `Keys.notify_watch_lock` with SET NX PX looks),
`watch_conditions` finds the conditions that hold now, compares them with the open ones
kept in `Keys.notify_conditions` and, for each one that began or ended, adds its event to
the events stream: `task.overdue` / `task.caught_up`, `queue.unserved` / `queue.served`,
`beat.down` / `beat.up`, `worker.down` / `worker.up`. The events and the new state are
written by one script that first checks that no other look wrote since this one read
(`lua/conditions_commit.lua`), so a condition is announced once, whatever the number of
processes. The notifier (notifier.py) then reads them from the stream like every other event.

Each notification has its own `overdue_after_s`. A task is overdue from the smallest of
them on, and its `task.overdue` is announced again (with its `overdue_s`) each time it
crosses the threshold of a notification asking for it that none of its announcements
reached yet (`_Opened.told`): the notifier keeps an event for the notifications whose
threshold its `overdue_s` crossed, and drops it for those that have the condition open.
A notification configured while a task is overdue is thus told too.

The cost of a look does not grow with the tasks stored: overdue tasks are found by a
cursor through the next-run index (`Keys.next_runs`) that reads only the slots that
crossed the threshold since the last look, at most `SCAN_PAGE` of them (`_Cursor`), plus
the tasks of the conditions already open. docs/semantics.md ("Conditions") says what each
condition means, what ends it, and the `reason` its closing event gives.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import Redis

from taskdispatch.domain.liveness import ALIVE_MS
from taskdispatch.domain.models import TaskStatus
from taskdispatch.domain.routing import queue_for
from taskdispatch.settings import Settings
from taskdispatch.store.events import MAX_EVENTS, event_fields
from taskdispatch.store.keys import ENABLED_FIELD, Keys, dispatcher_enabled, reply_text
from taskdispatch.store.notifications import RECOVERY_OF, parse_notifications
from taskdispatch.store.scripts import CONDITIONS_COMMIT
from taskdispatch.store.tasks import holding_messages, unconsumed_candidates

__all__ = ["SCAN_PAGE", "Reason", "watch_conditions"]

log = logging.getLogger(__name__)

# Most members of the next-run index one look reads.
SCAN_PAGE = 500
# Each condition's opening event -> the event that closes it.
_CLOSING = {condition: recovery for recovery, condition in RECOVERY_OF.items()}
# Why a condition closed (its closing event's `reason`): it ended by itself, the operator
# stopped the dispatcher (which closes every condition), paused or deleted the task, or a
# dead worker left the fleet's heartbeats (trimmed after an hour) without coming back.
Reason = Literal["cleared", "dispatcher_stopped", "paused", "deleted", "forgotten"]

# The one condition about the whole fleet has this subject in its id.
_FLEET = "fleet"
# The task hash fields a look reads (HMGET, in this order).
_TASK_FIELDS = ("status", "run_id", "next_ms", "account_id", "queue", "sys_type")
# The watcher's bookkeeping (`Keys.notify_watch`): the token of the last look's write, when
# it looked, and its cursor through the next-run index.
_TOKEN, _LOOK_MS, _CURSOR = "token", "look_ms", "cursor"


def watch_conditions(redis: Redis, keys: Keys, settings: Settings, *, now_ms: int) -> int:
    """One look (at most once per settings.notify_watch_every_s across the fleet, by a SET NX
    PX lock taken only while a notification exists): XADD the down/up events of conditions
    that changed since the last look; returns how many."""
    if not redis.exists(keys.notifications()):
        # Nothing to alert: no lock taken and nothing written (every API process and beat
        # calls this each period); state a removed notification left is cleared, once.
        if redis.exists(keys.notify_conditions(), keys.notify_watch()):
            redis.delete(keys.notify_conditions(), keys.notify_watch())
        return 0
    period_ms = max(1, round(settings.notify_watch_every_s * 1000))
    if not redis.set(keys.notify_watch_lock(), now_ms, nx=True, px=period_ms):
        return 0
    alive_since = now_ms - ALIVE_MS
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.notifications())
        pipe.hgetall(keys.notify_conditions())
        pipe.hgetall(keys.notify_watch())
        pipe.hget(keys.dispatcher(), ENABLED_FIELD)
        pipe.zrevrange(keys.beats(), 0, 0, withscores=True)
        pipe.zrangebyscore(keys.workers(), alive_since, "+inf")
        pipe.hgetall(keys.worker_queues())
        pipe.smembers(keys.published_queues())
        definitions, opened_raw, book_raw, flag, beat_head, live, queues_of, published = (
            pipe.execute()
        )
    if not definitions:
        # Nothing to alert: no condition is watched, and a later notification starts afresh.
        if opened_raw or book_raw:
            redis.delete(keys.notify_conditions(), keys.notify_watch())
        return 0

    opened = {
        reply_text(cid): _Opened.from_json(reply_text(raw)) for cid, raw in opened_raw.items()
    }
    book = {reply_text(k): reply_text(v) for k, v in book_raw.items()}
    enabled = dispatcher_enabled(flag)
    last_look_ms = int(book[_LOOK_MS]) if _LOOK_MS in book else None
    cursor = _Cursor.parse(book.get(_CURSOR))
    notifications = parse_notifications(
        {reply_text(k): reply_text(v) for k, v in definitions.items()}
    )
    # Late from the smallest threshold on; each notification's own is in `overdue_after_s`.
    cutoff_ms = now_ms - min(n.overdue_after_s for n in notifications.values()) * 1000
    overdue_after_s = {
        n.name: n.overdue_after_s for n in notifications.values() if "task.overdue" in n.events
    }
    scanning = enabled and cursor.score_ms <= cutoff_ms
    open_hosts = _subjects(opened, "worker.down")
    dead_queues = (
        unconsumed_candidates(published, live, queues_of)
        if enabled and settings.broker_is_store
        else []
    )
    with redis.pipeline(transaction=False) as pipe:
        if scanning:
            cursor.queue_page(pipe, keys.next_runs(), cutoff_ms)
        if enabled and last_look_ms is not None:
            # Alive at the last look (a heartbeat since then - ALIVE_MS), stale now.
            pipe.zrangebyscore(
                keys.workers(),
                last_look_ms - ALIVE_MS,
                f"({alive_since}",
                withscores=True,
            )
        for host in open_hosts:
            pipe.zscore(keys.workers(), host)
        for queue in dead_queues:
            pipe.llen(queue)
        replies = pipe.execute()
    page = [(reply_text(m), int(s)) for m, s in replies.pop(0)] if scanning else []
    stale = replies.pop(0) if enabled and last_look_ms is not None else []
    host_scores = replies[: len(open_hosts)]
    lengths = replies[len(open_hosts) :]

    task_ids = list(dict.fromkeys([*_subjects(opened, "task.overdue"), *(m for m, _ in page)]))
    rows: list[Any] = []
    if task_ids:
        with redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hmget(keys.task(task_id), _TASK_FIELDS)
            rows = pipe.execute()

    found = _Found()
    found.tasks(
        task_ids,
        rows,
        enabled=enabled,
        cutoff_ms=cutoff_ms,
        overdue_after_s=overdue_after_s,
        now_ms=now_ms,
        settings=settings,
    )
    found.beat(beat_head, enabled=enabled, alive_since=alive_since)
    found.workers(
        stale, open_hosts, host_scores, queues_of, enabled=enabled, alive_since=alive_since
    )
    found.queues(holding_messages(dead_queues, lengths), opened, enabled=enabled)
    new_cursor = cursor.after(page, cutoff_ms) if scanning else cursor
    return _commit(redis, keys, book, opened, found, now_ms=now_ms, cursor=new_cursor)


@dataclass(frozen=True)
class _Opened:
    """An open condition as kept in `Keys.notify_conditions`: what it is about (the fields
    both its events carry), since when it holds, and the notifications its announcements
    were due to reach (`_Holds.due`) so far."""

    subject: dict[str, Any]
    since_ms: int
    told: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: str) -> _Opened:
        data = json.loads(raw)
        return cls(
            subject=data["subject"],
            since_ms=int(data["since_ms"]),
            told=tuple(data.get("told", ())),
        )

    def to_json(self) -> str:
        return json.dumps({"subject": self.subject, "since_ms": self.since_ms, "told": self.told})


@dataclass(frozen=True)
class _Holds:
    """A condition that holds now: what it is about, what its opening event adds, and the
    notifications it is due to reach, when that depends on how long it lasted (an overdue
    task: those asking for task.overdue whose threshold it crossed); an open condition is
    announced again when some of them were not due at its earlier announcements."""

    subject: dict[str, Any]
    detail: dict[str, Any]
    due: frozenset[str] = frozenset()


@dataclass
class _Found:
    """What a look found about every condition it judged: those that hold, and why each
    other one does not (the reason a still open one closes with)."""

    holds: dict[str, _Holds] = field(default_factory=dict)
    ended: dict[str, Reason] = field(default_factory=dict)

    def tasks(
        self,
        task_ids: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        enabled: bool,
        cutoff_ms: int,
        overdue_after_s: Mapping[str, int],
        now_ms: int,
        settings: Settings,
    ) -> None:
        """task.overdue: pending, no round started, its slot at or before the cutoff; due to
        reach the notifications (name -> threshold in `overdue_after_s`) whose threshold
        it crossed."""
        for task_id, row in zip(task_ids, rows, strict=True):
            cid = f"task.overdue|{task_id}"
            status, run_id, next_ms, account_id, own_queue, sys_type = (
                "" if x is None else reply_text(x) for x in row
            )
            if not status:
                self.ended[cid] = "deleted"
            elif not enabled:
                self.ended[cid] = "dispatcher_stopped"
            elif status == TaskStatus.PAUSED:
                self.ended[cid] = "paused"
            elif (
                status == TaskStatus.PENDING
                and not run_id
                and next_ms
                and int(next_ms) <= cutoff_ms
            ):
                queue = queue_for(
                    queue=own_queue or None, sys_type=sys_type or "", settings=settings
                )
                # The notifier's rule too: an event reaches a notification from its threshold on.
                overdue_s = (now_ms - int(next_ms)) // 1000
                self.holds[cid] = _Holds(
                    {"task_id": task_id, "account_id": account_id, "queue": queue},
                    {"overdue_s": overdue_s},
                    frozenset(name for name, s in overdue_after_s.items() if s <= overdue_s),
                )
            else:
                self.ended[cid] = "cleared"

    def beat(self, head: Sequence[Any], *, enabled: bool, alive_since: int) -> None:
        """beat.down: the dispatcher on, and no beat's heartbeat fresh."""
        cid = f"beat.down|{_FLEET}"
        last_ms = int(head[0][1]) if head else None
        if not enabled:
            self.ended[cid] = "dispatcher_stopped"
        elif last_ms is not None and last_ms >= alive_since:
            self.ended[cid] = "cleared"
        else:
            self.holds[cid] = _Holds({}, {"last_beat_ms": last_ms})

    def workers(
        self,
        stale: Iterable[Sequence[Any]],
        open_hosts: Sequence[str],
        scores: Sequence[Any],
        queues_of: Mapping[Any, Any],
        *,
        enabled: bool,
        alive_since: int,
    ) -> None:
        """worker.down: alive at the last look and stale now (the dispatcher on), until its
        heartbeat is fresh again."""
        queues = {reply_text(host): reply_text(q) for host, q in queues_of.items()}
        for host, score in ((reply_text(h), int(s)) for h, s in stale):
            self.holds[f"worker.down|{host}"] = _Holds(
                {"hostname": host},
                {
                    "last_seen_ms": score,
                    "queues": [q for q in queues.get(host, "").split(",") if q],
                },
            )
        for host, score in zip(open_hosts, scores, strict=True):
            cid = f"worker.down|{host}"
            if not enabled:
                self.ended[cid] = "dispatcher_stopped"
            elif score is None:
                self.ended[cid] = "forgotten"
            elif int(score) >= alive_since:
                self.ended[cid] = "cleared"
            else:
                self.holds.setdefault(cid, _Holds({"hostname": host}, {}))

    def queues(
        self, waiting: Mapping[str, int], opened: Mapping[str, _Opened], *, enabled: bool
    ) -> None:
        """queue.unserved: messages wait in a queue no live worker consumes (the status's
        `unconsumed_queues`; measurable when the broker is the store's Redis)."""
        for queue, messages in waiting.items():
            self.holds[f"queue.unserved|{queue}"] = _Holds({"queue": queue}, {"messages": messages})
        for queue in _subjects(opened, "queue.unserved"):
            cid = f"queue.unserved|{queue}"
            if cid not in self.holds:
                self.ended[cid] = "cleared" if enabled else "dispatcher_stopped"


@dataclass(frozen=True)
class _Cursor:
    """A position in the next-run index: past every member scored below `score_ms` and the
    first `skip` of those scored exactly `score_ms` (members of one score come in member
    order; `skip` is 0 unless more than a page share that score). It starts at 0 and
    follows the threshold: a look reads the slots that crossed it since the cursor's
    position, at most `SCAN_PAGE`, so after the first pass (which also reads the paused
    tasks' old slots once) each look reads only the slots that crossed it in the last
    period. Later writes of a slot are never behind it (a new slot is never before now), so
    nothing it passed can become overdue without a new slot; while the dispatcher is
    stopped it stays where it is, and the slots that crossed meanwhile are read when it
    starts again."""

    score_ms: int = 0
    skip: int = 0

    @classmethod
    def parse(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        score, skip = text.split(":")
        return cls(int(score), int(skip))

    def __str__(self) -> str:
        return f"{self.score_ms}:{self.skip}"

    def queue_page(self, pipe: Any, key: str, cutoff_ms: int) -> None:
        pipe.zrangebyscore(
            key, self.score_ms, cutoff_ms, start=self.skip, num=SCAN_PAGE, withscores=True
        )

    def after(self, page: Sequence[tuple[str, int]], cutoff_ms: int) -> _Cursor:
        """Where the next look starts, past `page` (what `queue_page` read)."""
        if len(page) < SCAN_PAGE:
            return _Cursor(cutoff_ms + 1)
        last = page[-1][1]
        if page[0][1] != last:
            # The members of the last score are read again rather than skipped by count: one
            # of them removed meanwhile would make a count skip a member never read. Reading
            # one again announces nothing twice (its condition is open, or it does not hold).
            return _Cursor(last)
        # A whole page of one score: only a count gets past it.
        return _Cursor(last, len(page) + (self.skip if last == self.score_ms else 0))


def _subjects(opened: Mapping[str, _Opened], kind: str) -> list[str]:
    """The subjects (task id, hostname, queue) of the open conditions of `kind`."""
    prefix = f"{kind}|"
    return [cid.removeprefix(prefix) for cid in opened if cid.startswith(prefix)]


def _commit(
    redis: Redis,
    keys: Keys,
    book: Mapping[str, str],
    opened: Mapping[str, _Opened],
    found: _Found,
    *,
    now_ms: int,
    cursor: _Cursor,
) -> int:
    """Write the transitions (events and state) and the bookkeeping, unless another look
    wrote since this one read; returns how many events were added."""
    opens: dict[str, str] = {}
    closes: list[str] = []
    events: list[list[str]] = []
    said: list[str] = []
    for cid, holds in found.holds.items():
        kind = cid.split("|", 1)[0]
        was_open = opened.get(cid)
        if was_open is None:
            opens[cid] = _Opened(holds.subject, now_ms, tuple(sorted(holds.due))).to_json()
            said.append(f"condition {cid} began: {holds.detail}")
        elif holds.due - set(was_open.told):
            # Announced again for the notifications it reaches now; those it reached before
            # have it open and drop the repeat.
            told = tuple(sorted(holds.due | set(was_open.told)))
            opens[cid] = _Opened(holds.subject, was_open.since_ms, told).to_json()
            newly = sorted(holds.due - set(was_open.told))
            said.append(f"condition {cid} announced again for {newly}: {holds.detail}")
        else:
            continue
        events.append(_flat(event_fields(kind, **holds.subject, **holds.detail)))
    for cid, was in opened.items():
        if cid not in found.holds:
            kind = _CLOSING[cid.split("|", 1)[0]]
            reason = found.ended.get(cid, "cleared")
            closes.append(cid)
            events.append(
                _flat(event_fields(kind, **was.subject, reason=reason, since_ms=was.since_ms))
            )
            said.append(f"condition {cid} ended ({reason})")
    change = {
        "book": {_TOKEN: uuid.uuid4().hex, _LOOK_MS: str(now_ms), _CURSOR: str(cursor)},
        "open": opens,
        "close": closes,
        "events": events,
    }
    done = CONDITIONS_COMMIT(
        redis,
        keys=[keys.notify_conditions(), keys.notify_watch(), keys.events()],
        args=[_TOKEN, book.get(_TOKEN, ""), MAX_EVENTS, json.dumps(change, ensure_ascii=False)],
    )
    if not int(done):
        return 0
    for line in said:
        log.warning("%s", line)
    return len(events)


def _flat(fields: Mapping[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]
