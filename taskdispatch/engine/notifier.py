"""Alerts: events in, grouped messages out, delivered until a receiver takes them.

Three steps, each safe with any number of beats and API processes running them:

1. Intake. Every event is already in the events stream (`events.py`), written in the
   transaction of the change it reports, so the stream is the outbox: nothing on a round's
   or a tick's path waits for an alert. A consumer group (`GROUP`) on the stream hands its
   entries over; one process at a time (the holder of `Keys.notify_intake_lock`) takes them,
   in stream order, under one consumer name, so a new holder first takes what a dead one
   left unacknowledged. For each notification that wants the event and whose match covers
   its task, the subject (a task, a queue, a worker, the fleet) joins the notification's open
   group for that event (`Keys.notify_group`), whose window closes `group_window_s` after
   its first event (`Keys.notify_windows`). A condition (`task.error`, `task.overdue`, ...)
   is announced once per subject until its recovery (`notifications.RECOVERY_OF`) closes it
   (`Keys.notify_open`). The group writes, the open conditions and the XACK of the batch go
   in one MULTI, fenced by the intake lock: a batch is taken exactly once.
2. Flush. A group whose window closed becomes one delivery (`Keys.notify_delivery`, due at
   once in `Keys.notify_due`) in one script (`lua/notifier_flush.lua`): each group becomes
   exactly one delivery, listing at most `TASKS_LISTED` subjects with the total in `count`.
3. Send. A sender claims due deliveries (`lua/notifier_claim.lua`: their due time moves
   `notify_claim_s` ahead, so one that dies mid-POST leaves them to another), POSTs them
   (`notify_formats`), and records the attempt (`lua/notifier_record.lua`): delivered, or due
   again after a backoff, or given up `notify_retry_for_s` after the first attempt. The
   delivery id (the X-Taskdispatch-Delivery header) stays the same on every attempt, so a
   receiver drops the repeat that a crash between its 2xx and our record causes. HTTP goes
   only to the configured URL: no redirect is followed and no proxy from the environment is
   used.

`NotifyLoop` runs the three in a daemon thread of every beat and every API process, with the
condition watcher (`conditions.watch_conditions`); the intake reads the stream only while a
notification exists.
docs/reliability.md states the guarantees; docs/redis-keys.md the keys.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError, ResponseError

from taskdispatch.domain.clock import now_ms as wall_ms
from taskdispatch.domain.models import Task
from taskdispatch.domain.routing import queue_of
from taskdispatch.engine.notify_formats import Message, Outgoing, refusal, render
from taskdispatch.settings import Settings
from taskdispatch.store.connections import store_client
from taskdispatch.store.keys import Keys, reply_text
from taskdispatch.store.notifications import (
    RECENT_KEPT,
    RECOVERY_OF,
    TASK_EVENTS,
    Attempt,
    AttemptOutcome,
    Notification,
    get_notification,
    parse_notifications,
    put_notification,
)
from taskdispatch.store.scripts import (
    NOTIFIER_CLAIM,
    NOTIFIER_FLUSH,
    NOTIFIER_LEAD,
    NOTIFIER_RECORD,
)
from taskdispatch.store.transaction import Writes, optimistic

__all__ = [
    "BACKOFF_CAP_S",
    "CONSUMER",
    "GROUP",
    "TASKS_LISTED",
    "Answer",
    "DeliveryCounts",
    "Notifier",
    "NotifyLoop",
    "delivery_counts",
    "post",
    "queue_delivery",
    "queue_test",
    "save_notification",
]

log = logging.getLogger(__name__)

GROUP = "notify"
# One consumer name for the whole fleet: the intake lock lets one process read at a time,
# and whoever holds it next reads first what the last holder read but never acknowledged.
CONSUMER = "notifier"
# Subjects a message lists at most; `count` says how many the group held.
TASKS_LISTED = 50
# Stream entries per intake batch, and batches per loop iteration at most.
_INTAKE_BATCH = 500
_INTAKE_BATCHES = 20
# Windows flushed, and deliveries sent in parallel, per iteration at most.
_FLUSH_BATCH = 100
_SEND_BATCH = 4
# A receiver gets this long to answer (at most half the claim, so that a live sender is
# never overtaken by another while it waits).
_POST_TIMEOUT_S = 10.0
BACKOFF_CAP_S = 600.0
# Bytes of a receiver's answer read (to tell a chat platform's refusal).
_ANSWER_BYTES = 65_536
# The loop's period: how late a closed window or a due retry is sent at most.
_TICK_S = 1.0
# Fleet subjects (one per event kind) and the condition recovery closes on deletion.
_FLEET = "fleet"
_TASK_CONDITIONS = tuple(opening for opening in RECOVERY_OF.values() if opening in TASK_EVENTS)


def queue_delivery(
    pipe: Any,
    keys: Keys,
    delivery_id: str,
    *,
    name: str,
    event: str,
    occurred_at_ms: int,
    entries: Sequence[Mapping[str, Any]],
    count: int,
    now_ms: int,
) -> None:
    """Queue a delivery due now (the fields `lua/notifier_flush.lua` writes for a group)."""
    pipe.hset(
        keys.notify_delivery(delivery_id),
        mapping={
            "name": name,
            "event": event,
            "occurred_at_ms": occurred_at_ms,
            "count": count,
            "tasks": json.dumps(list(entries), ensure_ascii=False),
            "attempts": 0,
            "created_ms": now_ms,
        },
    )
    pipe.zadd(keys.notify_due(), {delivery_id: now_ms})


async def save_notification(
    redis: AsyncRedis, keys: Keys, name: str, body: Mapping[str, Any], *, now_ms: int
) -> Notification:
    """PUT /notifications/{name}: save the definition (`notifications.put_notification`),
    then make sure the intake's consumer group exists. The first notification also moves
    the group to the stream's end: with none defined the intake stopped, and the events it
    left behind concern no notification to come."""
    first = not await redis.hlen(keys.notifications())
    saved = await put_notification(redis, keys, name, body, now_ms=now_ms)
    await _ensure_group(redis, keys, from_now=first)
    return saved


async def _ensure_group(redis: AsyncRedis, keys: Keys, *, from_now: bool) -> None:
    try:
        await redis.xgroup_create(keys.events(), GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        if from_now:
            await redis.xgroup_setid(keys.events(), GROUP, id="$")


async def queue_test(redis: AsyncRedis, keys: Keys, name: str, *, now_ms: int) -> str:
    """Queue a `test` message to notification `name`, sent at once by the senders through the
    same delivery path as every alert; returns its delivery id."""
    await get_notification(redis, keys, name)
    delivery_id = uuid.uuid4().hex
    async with redis.pipeline(transaction=True) as pipe:
        queue_delivery(
            pipe,
            keys,
            delivery_id,
            name=name,
            event="test",
            occurred_at_ms=now_ms,
            entries=[],
            count=0,
            now_ms=now_ms,
        )
        await pipe.execute()
    return delivery_id


@dataclass(frozen=True)
class DeliveryCounts:
    """For /metrics: deliveries made and given up per notification, and those waiting."""

    delivered: dict[str, int]
    given_up: dict[str, int]
    pending: int


async def delivery_counts(redis: AsyncRedis, keys: Keys) -> DeliveryCounts:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.notify_stats())
        pipe.zcard(keys.notify_due())
        stats, pending = await pipe.execute()
    counts: dict[str, dict[str, int]] = {"delivered": {}, "given_up": {}}
    for key, value in stats.items():
        kind, _, name = reply_text(key).partition("|")
        if kind in counts:
            counts[kind][name] = int(value)
    return DeliveryCounts(counts["delivered"], counts["given_up"], int(pending))


# ---- HTTP ------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (an alert goes to the configured URL or nowhere): the 3xx
    is then an HTTPError, a failed attempt."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No ProxyHandler from the environment: an alert goes straight to its receiver.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True)
class Answer:
    """What a POST got: the status (None when none came) and the body, or the error."""

    status: int | None
    body: bytes = b""
    error: str | None = None


def post(outgoing: Outgoing, *, timeout_s: float) -> Answer:
    """POST `outgoing` once (http and https only)."""
    if not outgoing.url.startswith(("http://", "https://")):
        return Answer(None, error="not an http(s) URL")
    request = urllib.request.Request(
        outgoing.url, data=outgoing.body, headers=outgoing.headers, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Answer(int(response.status), response.read(_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.read(_ANSWER_BYTES))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Answer(None, error=f"{type(exc).__name__}: {reason}"[:500])


# ---- The notifier ----------------------------------------------------------------------------


@dataclass
class _Plan:
    """The writes one intake batch makes, in stream order."""

    open_now: dict[tuple[str, str], bool] = field(default_factory=dict)
    opened: set[tuple[str, str]] = field(default_factory=set)
    closed: set[tuple[str, str]] = field(default_factory=set)
    # (name, event) -> subject -> entry JSON; (name, event) -> window close ms.
    groups: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    closes: dict[tuple[str, str], int] = field(default_factory=dict)

    def is_open(self, name: str, member: str) -> bool:
        return self.open_now.get((name, member), False)

    def open(self, name: str, member: str) -> None:
        self.open_now[(name, member)] = True
        self.closed.discard((name, member))
        self.opened.add((name, member))

    def close(self, name: str, member: str) -> None:
        self.open_now[(name, member)] = False
        self.opened.discard((name, member))
        self.closed.add((name, member))

    def add(
        self, notification: Notification, event: str, subject: str, entry: str, at_ms: int
    ) -> None:
        key = (notification.name, event)
        self.groups.setdefault(key, {})[subject] = entry
        self.closes.setdefault(key, at_ms + notification.group_window_s * 1000)

    def queue(self, pipe: Any, keys: Keys) -> None:
        for name, member in sorted(self.opened):
            pipe.sadd(keys.notify_open(name), member)
        for name, member in sorted(self.closed):
            pipe.srem(keys.notify_open(name), member)
        for (name, event), entries in self.groups.items():
            pipe.hset(keys.notify_group(name, event), mapping=entries)
            pipe.zadd(
                keys.notify_windows(), {f"{name}|{event}": self.closes[(name, event)]}, nx=True
            )


@dataclass(frozen=True)
class _Event:
    entry_id: str
    kind: str
    data: dict[str, Any]
    at_ms: int

    @property
    def subject(self) -> str | None:
        """What the event is about: a task, a queue, a worker or the fleet."""
        if self.kind in TASK_EVENTS or self.kind == "task.deleted":
            value = self.data.get("task_id")
        elif self.kind.startswith("queue."):
            value = self.data.get("queue")
        elif self.kind.startswith("worker."):
            value = self.data.get("worker") or self.data.get("hostname")
        else:
            value = _FLEET
        return None if value is None else str(value)


class Notifier:
    """The three steps over one synchronous client (see the module docstring)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.tz = ZoneInfo(settings.timezone)
        # Fences this process's intake lock and delivery claims.
        self.token = uuid.uuid4().hex
        self.claim_ms = int(settings.notify_claim_s * 1000)
        self.timeout_s = min(_POST_TIMEOUT_S, settings.notify_claim_s / 2)
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- 1. intake ---------------------------------------------------------------------------

    def intake(self) -> int:
        """Take new events into the notifications' groups, if this process may (it holds the
        intake lock); returns how many stream entries it took."""
        keys = self.keys
        if not NOTIFIER_LEAD(
            self.redis, keys=[keys.notify_intake_lock()], args=[self.token, self.claim_ms]
        ):
            return 0
        taken = 0
        for _ in range(_INTAKE_BATCHES):
            entries = self._read()
            if not entries or not self._take(entries):
                break
            taken += len(entries)
            if len(entries) < _INTAKE_BATCH:
                break
        return taken

    def _read(self) -> list[tuple[str, dict[str, str]]]:
        """Entries read but not acknowledged (by a holder that died), then new ones."""
        stream = self.keys.events()
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.xreadgroup(GROUP, CONSUMER, {stream: "0"}, count=_INTAKE_BATCH)
                pipe.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=_INTAKE_BATCH)
                replies = pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # First use, or a Redis that restarted without its data: from now on.
            try:
                self.redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
            except ResponseError as busy:
                if "BUSYGROUP" not in str(busy):
                    raise
            return []
        entries: list[tuple[str, dict[str, str]]] = []
        for reply in replies:
            for _, items in reply or []:
                entries.extend((str(entry_id), fields or {}) for entry_id, fields in items)
        return entries

    def _take(self, entries: list[tuple[str, dict[str, str]]]) -> bool:
        """Turn one batch into group writes and acknowledge it, in one MULTI fenced by the
        intake lock (and retried when the definitions change meanwhile); False when this
        process no longer holds the lock."""
        keys = self.keys
        events = [e for e in (_event(entry_id, fields) for entry_id, fields in entries) if e]

        def read(pipe: Any) -> tuple[Any, Any]:
            return pipe.get(keys.notify_intake_lock()), pipe.hgetall(keys.notifications())

        def plan(got: tuple[Any, Any]) -> tuple[bool, Writes | None]:
            holder, raw = got
            if holder != self.token:
                return False, None
            groups = self._plan(events, parse_notifications(raw))

            def writes(pipe: Any) -> None:
                groups.queue(pipe, keys)
                pipe.xack(keys.events(), GROUP, *(entry_id for entry_id, _ in entries))
                pipe.pexpire(keys.notify_intake_lock(), self.claim_ms)

            return True, writes

        watched = [keys.notify_intake_lock(), keys.notifications()]
        return optimistic(self.redis, watched, read, plan)

    def _plan(self, events: list[_Event], definitions: Mapping[str, Notification]) -> _Plan:
        """What the batch does to the groups and the open conditions, in stream order."""
        plan = _Plan()
        if not definitions:
            return plan
        tasks, open_now = self._read_state(events, definitions)
        plan.open_now.update(open_now)
        for event in events:
            subject = event.subject
            if subject is None:
                continue
            if event.kind == "task.deleted":
                for name in definitions:
                    for condition in _TASK_CONDITIONS:
                        if plan.is_open(name, f"{condition}|{subject}"):
                            plan.close(name, f"{condition}|{subject}")
                continue
            task = tasks.get(subject) if event.kind in TASK_EVENTS else None
            entry: str | None = None
            opening = RECOVERY_OF.get(event.kind)
            for notification in definitions.values():
                name = notification.name
                was_open = False
                if opening is not None:
                    # A recovery closes its condition whatever the notification asks for.
                    member = f"{opening}|{subject}"
                    was_open = plan.is_open(name, member)
                    if was_open:
                        plan.close(name, member)
                if event.kind not in notification.events or not self._covers(
                    notification, event, task
                ):
                    continue
                if event.kind in RECOVERY_OF.values():
                    member = f"{event.kind}|{subject}"
                    if plan.is_open(name, member):
                        continue  # announced already, and not recovered since
                    plan.open(name, member)
                elif opening is not None and opening in notification.events and not was_open:
                    continue  # the notification never announced what this recovers from
                if entry is None:
                    entry = json.dumps(self._entry(event, subject, task), ensure_ascii=False)
                plan.add(notification, event.kind, subject, entry, event.at_ms)
        return plan

    def _read_state(
        self, events: list[_Event], definitions: Mapping[str, Notification]
    ) -> tuple[dict[str, Task], dict[tuple[str, str], bool]]:
        """The tasks the batch is about, and which of its conditions each notification has
        open, in one round trip."""
        task_ids = sorted({e.subject for e in events if e.kind in TASK_EVENTS and e.subject})
        members: set[str] = set()
        for event in events:
            subject = event.subject
            if subject is None:
                continue
            if event.kind == "task.deleted":
                members.update(f"{c}|{subject}" for c in _TASK_CONDITIONS)
            elif event.kind in RECOVERY_OF:
                members.add(f"{RECOVERY_OF[event.kind]}|{subject}")
            elif event.kind in RECOVERY_OF.values():
                members.add(f"{event.kind}|{subject}")
        ordered = sorted(members)
        names = sorted(definitions) if ordered else []
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
            for name in names:
                pipe.smismember(self.keys.notify_open(name), ordered)
            replies = pipe.execute()
        tasks = {
            task_id: Task.from_hash(raw, task_id=task_id)
            for task_id, raw in zip(task_ids, replies[: len(task_ids)], strict=True)
            if raw
        }
        open_now = {
            (name, member): bool(flag)
            for name, flags in zip(names, replies[len(task_ids) :], strict=True)
            for member, flag in zip(ordered, flags, strict=True)
        }
        return tasks, open_now

    def _covers(self, notification: Notification, event: _Event, task: Task | None) -> bool:
        match = notification.match
        if event.kind in TASK_EVENTS:
            if event.kind == "task.overdue":
                overdue_s = event.data.get("overdue_s")
                if overdue_s is not None and overdue_s < notification.overdue_after_s:
                    # Not late enough for this one yet: the watcher announces the task again
                    # once it crosses this threshold (conditions.py).
                    return False
            if task is None:
                return match.covers(tags=None, queue=event.data.get("queue"))
            return match.covers(tags=task.tags, queue=queue_of(task, self.settings))
        if match.queue is None:
            return True
        if event.kind.startswith("queue."):
            return bool(event.data.get("queue") == match.queue)
        queues = event.data.get("queues")
        return not isinstance(queues, list) or match.queue in queues

    def _entry(self, event: _Event, subject: str, task: Task | None) -> dict[str, Any]:
        """What a message says about the subject of `event`."""
        data = event.data
        if event.kind not in TASK_EVENTS:
            return {**data, "subject": subject, "at_ms": event.at_ms}
        entry: dict[str, Any] = {
            "subject": subject,
            "task_id": subject,
            "account_id": task.account_id if task else data.get("account_id"),
            "account_name": task.account_name if task else None,
            # What a task.error is about, even if the task was resumed since.
            "status": "error" if event.kind == "task.error" else _status(task),
            "queue": queue_of(task, self.settings) if task else data.get("queue"),
            "reason": data.get("error") or data.get("reason") or data.get("cancelled_by"),
            "last_error": data.get("last_error") or (task.last_error if task else None),
            "at_ms": event.at_ms,
        }
        if event.kind == "task.overdue" and "overdue_s" in data:
            entry["overdue_s"] = data["overdue_s"]
        return entry

    # -- 2. flush ----------------------------------------------------------------------------

    def flush(self, members: Iterable[str], *, now_ms: int) -> int:
        """Turn the closed windows among `members` ("<name>|<event>") into deliveries;
        returns how many it made."""
        chosen = list(members)[:_FLUSH_BATCH]
        if not chosen:
            return 0
        group_keys: list[str] = []
        args: list[str | int] = [now_ms, TASKS_LISTED]
        for member in chosen:
            name, _, event = member.partition("|")
            delivery_id = uuid.uuid4().hex
            group_keys += [
                self.keys.notify_group(name, event),
                self.keys.notify_delivery(delivery_id),
            ]
            args += [member, name, event, delivery_id]
        keys = [self.keys.notify_windows(), self.keys.notify_due(), *group_keys]
        return int(NOTIFIER_FLUSH(self.redis, keys=keys, args=args))

    # -- 3. send -----------------------------------------------------------------------------

    def send(self, delivery_ids: Iterable[str], *, now_ms: int) -> int:
        """Claim the due deliveries among `delivery_ids`, POST each once, record the attempts;
        returns how many it attempted."""
        ids = list(delivery_ids)[:_SEND_BATCH]
        if not ids:
            return 0
        keys = self.keys
        reply = NOTIFIER_CLAIM(
            self.redis,
            keys=[keys.notify_due(), *(keys.notify_delivery(i) for i in ids)],
            args=[now_ms, self.claim_ms, self.token, *ids],
        )
        claimed = [(str(reply[i]), _pairs(reply[i + 1])) for i in range(0, len(reply), 2)]
        if not claimed:
            return 0
        definitions = parse_notifications(self.redis.hgetall(keys.notifications()))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_SEND_BATCH, thread_name_prefix="td-notify-post")
        attempts = []
        for delivery_id, fields in claimed:
            notification = definitions.get(fields["name"])
            if notification is None:
                self._write(delivery_id, fields, "dropped", None)
                continue
            outgoing = render(
                _message(delivery_id, fields),
                fmt=notification.format,
                url=notification.url,
                secret=notification.secret,
                public_url=self.settings.public_url,
                tz=self.tz,
                now_ms=now_ms,
            )
            future = self._pool.submit(post, outgoing, timeout_s=self.timeout_s)
            attempts.append((delivery_id, fields, notification, future))
        for delivery_id, fields, notification, future in attempts:
            answer: Answer = future.result()
            why = answer.error or refusal(notification.format, answer.status or 0, answer.body)
            self._after(delivery_id, fields, answer, why)
        return len(attempts)

    def _after(
        self, delivery_id: str, fields: dict[str, str], answer: Answer, why: str | None
    ) -> None:
        """Record an attempt: delivered, or due again after a backoff, or given up."""
        at = wall_ms()
        made = int(fields.get("attempts", 0)) + 1
        first_ms = int(fields.get("first_try_ms") or at)
        outcome: AttemptOutcome
        next_ms: int | None
        if why is None:
            outcome, next_ms = "delivered", None
        elif at - first_ms >= self.settings.notify_retry_for_s * 1000:
            outcome, next_ms = "given_up", None
        else:
            backoff_s = min(BACKOFF_CAP_S, self.settings.notify_backoff_s * 2 ** (made - 1))
            outcome, next_ms = "retrying", at + int(backoff_s * 1000)
        attempt = Attempt(
            at_ms=at,
            event=fields["event"],
            delivery_id=delivery_id,
            outcome=outcome,
            attempts=made,
            status_code=answer.status,
            error=why,
            next_ms=next_ms,
        )
        if outcome != "delivered":
            log.warning(
                "notification %s: delivery %s (%s) attempt %d failed: %s%s",
                fields["name"],
                delivery_id,
                fields["event"],
                made,
                why,
                "; given up" if outcome == "given_up" else "",
            )
        self._write(delivery_id, fields, outcome, attempt)

    def _write(
        self, delivery_id: str, fields: dict[str, str], outcome: str, attempt: Attempt | None
    ) -> None:
        keys = self.keys
        stats = {"delivered": "delivered", "given_up": "given_up"}.get(outcome)
        NOTIFIER_RECORD(
            self.redis,
            keys=[
                keys.notify_due(),
                keys.notify_delivery(delivery_id),
                keys.notify_recent(fields["name"]),
                keys.notify_stats(),
            ],
            args=[
                delivery_id,
                self.token,
                outcome,
                attempt.to_json() if attempt else "",
                RECENT_KEPT,
                f"{stats}|{fields['name']}" if stats else "",
                attempt.attempts if attempt else 0,
                (attempt.next_ms or 0) if attempt else 0,
            ],
        )


def _event(entry_id: str, fields: Mapping[str, str]) -> _Event | None:
    """A stream entry the notifier may care about (None: any other, or trimmed)."""
    kind = fields.get("type")
    if kind not in _WANTED:
        return None
    try:
        data = json.loads(fields.get("data") or "{}")
    except ValueError:
        return None
    at_ms = int(entry_id.partition("-")[0])
    return _Event(entry_id, kind, data if isinstance(data, dict) else {}, at_ms)


# Events the intake looks at: every one a notification may ask for (`test` is sent by the
# API directly, never through the stream), and task deletions, which end their conditions.
_WANTED = frozenset(
    {*TASK_EVENTS, "queue.unserved", "beat.down", "worker.down", *RECOVERY_OF, "task.deleted"}
)


def _message(delivery_id: str, fields: Mapping[str, str]) -> Message:
    return Message(
        event=fields["event"],
        delivery_id=delivery_id,
        notification=fields["name"],
        occurred_at_ms=int(fields["occurred_at_ms"]),
        count=int(fields["count"]),
        entries=tuple(json.loads(fields.get("tasks") or "[]")),
    )


def _status(task: Task | None) -> str | None:
    return task.status.value if task else None


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {reply_text(flat[i]): reply_text(flat[i + 1]) for i in range(0, len(flat), 2)}


# ---- The loop --------------------------------------------------------------------------------

Watcher = Callable[..., Any]


class NotifyLoop:
    """The notifier (and the condition watcher) in a daemon thread of a beat or an API
    process: every `_TICK_S`, intake (while a notification exists), watch, flush and send.

    It has its own Redis client; nothing a round or a tick does waits for it, and a Redis
    outage only makes it log and try again at the next iteration."""

    def __init__(self, settings: Settings, *, redis: Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._owns_redis = redis is None
        self.redis = redis or store_client(settings, timeout_s=_POST_TIMEOUT_S)
        self.notifier = Notifier(self.redis, settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._watcher_missing = False

    def start(self) -> None:
        """Start the thread (once; later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="taskdispatch-notifier", daemon=True
            )
            self._thread.start()

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop the thread; a POST in flight is left to finish (or to time out) on its own,
        and its delivery is attempted again after its claim."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.notifier.close()
        if self._owns_redis:
            self.redis.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(now_ms=wall_ms())
            except RedisError as exc:
                log.warning("notifier cannot reach Redis (%s); trying again", exc)
            except Exception:
                # The thread must outlive any one bad iteration (a receiver's odd answer).
                log.exception("notifier iteration failed; trying again")
            self._stop.wait(_TICK_S)

    def run_once(self, *, now_ms: int) -> None:
        """One iteration: intake (while a notification exists), watch, flush, send."""
        keys = self.keys
        if self.redis.hlen(keys.notifications()):
            self.notifier.intake()
        self._watch(now_ms)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.notify_windows(), "-inf", now_ms, start=0, num=_FLUSH_BATCH)
            pipe.zrangebyscore(keys.notify_due(), "-inf", now_ms, start=0, num=_SEND_BATCH)
            windows, due = pipe.execute()
        if windows and self.notifier.flush(windows, now_ms=now_ms):
            due = self.redis.zrangebyscore(
                keys.notify_due(), "-inf", now_ms, start=0, num=_SEND_BATCH
            )
        if due:
            self.notifier.send(due, now_ms=now_ms)

    def _watch(self, now_ms: int) -> None:
        """Run the condition watcher (conditions.py), which decides itself whether this
        process looks this period."""
        if self._watcher is None and not self._watcher_missing:
            try:
                from taskdispatch.engine.conditions import watch_conditions
            except ModuleNotFoundError as exc:
                # Built alongside this module: until it lands there is nothing to watch.
                if exc.name != "taskdispatch.engine.conditions":
                    raise
                self._watcher_missing = True
                return
            self._watcher = watch_conditions
        if self._watcher is not None:
            self._watcher(self.redis, self.keys, self.settings, now_ms=now_ms)
