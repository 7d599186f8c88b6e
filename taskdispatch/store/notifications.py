"""Notifications: where alerts go, for which events, in which shape; their definitions.

A notification (`Notification`) names a receiver `url`, the `events` it wants (from
`NOTIFY_EVENTS`), the message `format`, an optional signing `secret`, a `match` that narrows
task events to the tasks carrying one of its tags and/or routed to its queue, the
`overdue_after_s` of its `task.overdue` alerts and the `group_window_s` within which events of
one kind go out as one message. Definitions live in one hash (`Keys.notifications`), read by
every notifier at each intake, so a change applies from the next event on, without restart.

Conditions come in pairs (`RECOVERY_OF`): an opening event (`task.error`, `task.overdue`,
`queue.unserved`, `beat.down`, `worker.down`) is announced once per subject until its
recovery event closes it. How events become messages is `notifier.py`; their shapes,
`notify_formats.py`. docs/api.md describes the resource, docs/reliability.md the delivery.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio import Redis as AsyncRedis

from taskdispatch.domain import validation
from taskdispatch.domain.exceptions import InvalidTaskError, NotificationNotFoundError
from taskdispatch.store.events import queue_event
from taskdispatch.store.keys import Keys, reply_text
from taskdispatch.store.limits import check_name as check_limit_name
from taskdispatch.store.transaction import Writes, aoptimistic, read_definition

__all__ = [
    "DEFAULTS",
    "FORMATS",
    "NOTIFICATIONS_MAX",
    "NOTIFY_EVENTS",
    "RANGES",
    "RECENT_KEPT",
    "RECOVERY_OF",
    "TASK_EVENTS",
    "Attempt",
    "AttemptOutcome",
    "Notification",
    "NotifyMatch",
    "check_name",
    "delete_notification",
    "get_notification",
    "list_notifications",
    "notification_from_body",
    "parse_notifications",
    "put_notification",
    "recent_attempts",
]

# Events about one task each (the message lists tasks); the others are about the fleet.
TASK_EVENTS = (
    "task.error",
    "task.recovered",
    "round.failed",
    "round.lost",
    "round.cancelled",
    "task.overdue",
    "task.caught_up",
)
# Every event a notification may ask for. `test` is what POST /notifications/{name}/test sends.
NOTIFY_EVENTS = (
    *TASK_EVENTS,
    "queue.unserved",
    "queue.served",
    "beat.down",
    "beat.up",
    "worker.down",
    "worker.up",
    "test",
)
# Recovery event -> the condition it closes.
RECOVERY_OF = {
    "task.recovered": "task.error",
    "task.caught_up": "task.overdue",
    "queue.served": "queue.unserved",
    "beat.up": "beat.down",
    "worker.up": "worker.down",
}
FORMATS = ("json", "wecom", "dingtalk", "feishu", "slack")
DEFAULTS: dict[str, Any] = {"format": "json", "overdue_after_s": 300, "group_window_s": 30}
# field -> (min, max) in seconds.
RANGES = {"overdue_after_s": (1, 30 * 86_400), "group_window_s": (0, 3600)}
# Every notification is looked at for every event taken in: a bound keeps that cheap.
NOTIFICATIONS_MAX = 100
# Attempts kept per notification for GET /notifications/{name}.
RECENT_KEPT = 50
_URL_MAX = 2048
_SECRET_MAX = 256


@dataclass(frozen=True)
class NotifyMatch:
    """Which tasks' events a notification takes: with any of `tags` and/or routed to `queue`
    (both given: both must hold); nothing given: every task. Fleet events (beat, worker,
    queue) are not narrowed, but a `queue` match takes only the queue events of its queue."""

    tags: tuple[str, ...] = ()
    queue: str | None = None

    def covers(self, *, tags: tuple[str, ...] | None, queue: str | None) -> bool:
        """Whether a task with these tags and on this queue (None: unknown, the task is
        gone) is covered."""
        if self.tags and (tags is None or not set(self.tags) & set(tags)):
            return False
        return self.queue is None or self.queue == queue


@dataclass(frozen=True)
class Notification:
    name: str
    url: str
    events: tuple[str, ...]
    format: str = "json"
    secret: str | None = None
    match: NotifyMatch = field(default_factory=NotifyMatch)
    overdue_after_s: int = 300
    group_window_s: int = 30
    created_ms: int = 0
    updated_ms: int = 0

    def to_json(self) -> str:
        data = {
            "url": self.url,
            "events": list(self.events),
            "format": self.format,
            "secret": self.secret,
            "match": {"tags": list(self.match.tags), "queue": self.match.queue},
            "overdue_after_s": self.overdue_after_s,
            "group_window_s": self.group_window_s,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, name: str, text: str) -> Notification:
        data = json.loads(text)
        match = data["match"]
        return cls(
            name=name,
            url=data["url"],
            events=tuple(data["events"]),
            format=data["format"],
            secret=data["secret"],
            match=NotifyMatch(tags=tuple(match["tags"]), queue=match["queue"]),
            overdue_after_s=data["overdue_after_s"],
            group_window_s=data["group_window_s"],
            created_ms=data["created_ms"],
            updated_ms=data["updated_ms"],
        )


AttemptOutcome = Literal["delivered", "retrying", "given_up"]


@dataclass(frozen=True)
class Attempt:
    """One attempt to deliver a message, as the notification's recent list keeps it.

    `outcome`: "delivered", "retrying" (failed; tried again at `next_ms`) or "given_up"
    (failed, and notify_retry_for_s passed since the first attempt)."""

    at_ms: int
    event: str
    delivery_id: str
    outcome: AttemptOutcome
    attempts: int
    status_code: int | None = None
    error: str | None = None
    next_ms: int | None = None

    def to_json(self) -> str:
        return json.dumps(vars(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Attempt:
        return cls(**json.loads(text))


def check_name(name: str) -> str:
    """A notification name is part of Redis keys and URLs: the rule of limit names."""
    try:
        return check_limit_name(name)
    except InvalidTaskError:
        raise InvalidTaskError("notification_name", field="name", value=name) from None


def notification_from_body(
    name: str, body: Mapping[str, Any], *, now_ms: int, current: Notification | None
) -> Notification:
    """The notification a `PUT /notifications/{name}` body defines (validated), replacing
    `current` if any. A body without `secret` keeps the current secret; `"secret": null`
    removes it."""
    check_name(name)
    fields = {**DEFAULTS, **body}
    url = _url(fields.get("url"))
    events = _events(fields.get("events"))
    fmt = fields["format"]
    if fmt not in FORMATS:
        raise InvalidTaskError(
            "notification_format", field="format", value=repr(fmt), known=", ".join(FORMATS)
        )
    if "secret" in body:
        secret = _secret(body["secret"])
    else:
        secret = current.secret if current is not None else None
    seconds = {}
    for key, (low, high) in RANGES.items():
        value = fields[key]
        if type(value) is not int or not low <= value <= high:
            raise InvalidTaskError(
                "notification_range", field=key, min=low, max=high, value=repr(value)
            )
        seconds[key] = value
    return Notification(
        name=name,
        url=url,
        events=events,
        format=fmt,
        secret=secret,
        match=_match(fields.get("match")),
        overdue_after_s=seconds["overdue_after_s"],
        group_window_s=seconds["group_window_s"],
        created_ms=now_ms if current is None else current.created_ms,
        updated_ms=now_ms,
    )


def _url(value: Any) -> str:
    refused = InvalidTaskError("notification_url", field="url", max=_URL_MAX)
    if not isinstance(value, str) or not 1 <= len(value) <= _URL_MAX:
        raise refused
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise refused
    try:
        parts = urlsplit(value)
        # .port raises for a port that is not a number in 0..65535.
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise refused from None
    if parts.scheme not in ("http", "https") or not host:
        raise refused
    return value


def _events(value: Any) -> tuple[str, ...]:
    known = ", ".join(NOTIFY_EVENTS)
    if not isinstance(value, list) or not value:
        raise InvalidTaskError("notification_events", field="events", known=known)
    for i, event in enumerate(value):
        if event not in NOTIFY_EVENTS:
            raise InvalidTaskError(
                "notification_event", field=f"events[{i}]", value=repr(event), known=known
            )
    # Stored in the catalogue's order, each once.
    return tuple(e for e in NOTIFY_EVENTS if e in value)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _SECRET_MAX
        or any(unicodedata.category(ch).startswith("C") for ch in value)
    ):
        raise InvalidTaskError("notification_secret", field="secret", max=_SECRET_MAX)
    return value


def _match(value: Any) -> NotifyMatch:
    if value is None:
        return NotifyMatch()
    if not isinstance(value, Mapping) or set(value) - {"tags", "queue"}:
        raise InvalidTaskError("notification_match", field="match")
    tags = value.get("tags")
    return NotifyMatch(
        tags=() if tags is None else validation.tags(tags, field="match.tags"),
        queue=validation.check_queue(value.get("queue"), field="match.queue"),
    )


def parse_notifications(raw: Mapping[Any, Any]) -> dict[str, Notification]:
    """The definitions as `HGETALL Keys.notifications` returns them."""
    return {
        reply_text(name): Notification.from_json(reply_text(name), reply_text(text))
        for name, text in raw.items()
    }


# ---- The definitions in Redis (the API's asyncio client) -----------------------------------


async def put_notification(
    redis: AsyncRedis, keys: Keys, name: str, body: Mapping[str, Any], *, now_ms: int
) -> Notification:
    """Create or replace notification `name` from a PUT body (see `notification_from_body`)."""
    check_name(name)

    async def read(pipe: Any) -> Any:
        return await read_definition(
            pipe,
            keys.notifications(),
            name,
            most=NOTIFICATIONS_MAX,
            code="notifications_too_many",
        )

    def plan(raw: Any) -> tuple[Notification, Writes]:
        current = None if raw is None else Notification.from_json(name, reply_text(raw))
        notification = notification_from_body(name, body, now_ms=now_ms, current=current)

        def writes(pipe: Any) -> None:
            pipe.hset(keys.notifications(), name, notification.to_json())
            queue_event(pipe, keys, "notification.saved", name=name)

        return notification, writes

    return await aoptimistic(redis, [keys.notifications()], read, plan)


async def get_notification(redis: AsyncRedis, keys: Keys, name: str) -> Notification:
    check_name(name)
    raw = await redis.hget(keys.notifications(), name)
    if raw is None:
        raise NotificationNotFoundError(name)
    return Notification.from_json(name, reply_text(raw))


async def list_notifications(redis: AsyncRedis, keys: Keys) -> list[Notification]:
    """Every notification, in name order."""
    found = parse_notifications(await redis.hgetall(keys.notifications()))
    return [found[name] for name in sorted(found)]


async def delete_notification(redis: AsyncRedis, keys: Keys, name: str) -> None:
    """Delete notification `name` with its open groups, open conditions and recent attempts;
    its deliveries already made are dropped by the sender (it finds no notification)."""
    check_name(name)

    async def read(pipe: Any) -> bool:
        return bool(await pipe.hexists(keys.notifications(), name))

    def plan(exists: bool) -> tuple[None, Writes]:
        if not exists:
            raise NotificationNotFoundError(name)

        def writes(pipe: Any) -> None:
            pipe.hdel(keys.notifications(), name)
            pipe.delete(
                keys.notify_open(name),
                keys.notify_recent(name),
                *(keys.notify_group(name, event) for event in NOTIFY_EVENTS),
            )
            pipe.zrem(keys.notify_windows(), *(f"{name}|{event}" for event in NOTIFY_EVENTS))
            queue_event(pipe, keys, "notification.deleted", name=name)

        return None, writes

    await aoptimistic(redis, [keys.notifications()], read, plan)


async def recent_attempts(redis: AsyncRedis, keys: Keys, name: str) -> list[Attempt]:
    """The notification's latest delivery attempts, newest first."""
    raw = await redis.lrange(keys.notify_recent(name), 0, RECENT_KEPT - 1)
    return [Attempt.from_json(reply_text(item)) for item in raw]
