"""Input validation: what a field of a create or PATCH body may hold, and its parsed value.

Pure: no clock, no Redis. Every refusal is an `InvalidTaskError` naming the field, with
its message from `messages.py`. A task body's fields are checked by the validators of
`bodies.TaskSpec` and `bodies.TaskChange`, once, when the body is parsed; the rules that
also need the clock or the stored task (`end_ms`, `jitter` against a PATCHed interval,
`run_params` merged into the stored ones) are applied by `lifecycle.py`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from taskdispatch.domain import schedule
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.models import MISFIRE_POLICIES, TaskStatus
from taskdispatch.domain.queries import TaskQuery

__all__ = [
    "HORIZON_MS",
    "LIMITS",
    "RUN_PARAM_FIELDS",
    "STREAM_ID",
    "blackout",
    "check_horizon",
    "check_identifier",
    "check_interval",
    "check_json",
    "check_queue",
    "check_text",
    "end_ms",
    "end_value",
    "instant",
    "instant_value",
    "jitter",
    "max_runs",
    "misfire_grace",
    "misfire_policy",
    "page_limit",
    "request_id",
    "run_params",
    "stream_id",
    "tags",
    "task_query",
    "timezone",
    "weekdays",
    "window",
    "windows",
]

T = TypeVar("T")

RUN_PARAM_FIELDS = ("user_query", "user_topic", "user_style", "user_target_audience")

LIMITS = {
    "id_chars": 128,
    "text_chars": 512,
    "kwargs_bytes": 64 * 1024,
    "kwargs_depth": 32,
    "interval_s_max": 366 * 24 * 3600,
    "priority_offset_s_max": 366 * 24 * 3600,
    "misfire_grace_s_max": 7 * 24 * 3600,
    "tags_max": 20,
    "tag_chars": 64,
}

# 3000-01-01T00:00:00Z: far enough for any schedule, far from datetime's year-9999 limit.
HORIZON_MS = 32_503_680_000_000

_URL_RESERVED = frozenset("/?#%\\")


def check_identifier(value: str, *, field: str) -> str:
    """Ids become parts of Redis keys and URLs: printable, no whitespace, bounded."""
    if not value or len(value) > LIMITS["id_chars"]:
        raise InvalidTaskError("id_length", field=field, max=LIMITS["id_chars"], length=len(value))
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidTaskError("id_whitespace", field=field)
    # These would break the id's use as a URL path segment (/accounts/{id}/tasks).
    if any(ch in _URL_RESERVED for ch in value):
        raise InvalidTaskError("id_reserved", field=field, chars=" ".join(sorted(_URL_RESERVED)))
    return value


def check_text(value: str, *, field: str) -> str:
    if len(value) > LIMITS["text_chars"]:
        raise InvalidTaskError("text_length", field=field, max=LIMITS["text_chars"])
    if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n" for ch in value):
        raise InvalidTaskError("text_control", field=field)
    return value


def check_horizon(ms: int, *, field: str) -> int:
    """Times beyond the horizon would overflow date arithmetic near year 9999."""
    if ms > HORIZON_MS:
        raise InvalidTaskError("horizon", field=field)
    return ms


def check_json(value: Any, *, field: str, depth: int = 0) -> None:
    """A JSON value that Redis and the JSON encoder can store, and not absurdly deep."""
    if depth > LIMITS["kwargs_depth"]:
        raise InvalidTaskError("json_depth", field=field, max=LIMITS["kwargs_depth"])
    if isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), field=field)
            check_json(item, field=field, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, field=field, depth=depth + 1)
    elif isinstance(value, str):
        if any(unicodedata.category(ch) == "Cs" for ch in value):
            raise InvalidTaskError("json_surrogate", field=field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidTaskError("json_not_finite", field=field)


def check_interval(value: int) -> int:
    if not 1 <= value <= LIMITS["interval_s_max"]:
        raise InvalidTaskError(
            "interval_range", field="interval", max=LIMITS["interval_s_max"], value=value
        )
    return value


def _parsed(fn: Callable[..., T], *args: Any, field: str, **kw: Any) -> T:
    """`fn(*args, **kw)`, with a ScheduleError turned into the field's InvalidTaskError."""
    try:
        return fn(*args, **kw)
    except schedule.ScheduleError as exc:
        params = {k: v for k, v in exc.params.items() if k != "field"}
        raise InvalidTaskError(exc.key, field=field, detail=exc.detail, **params) from exc


def timezone(name: str) -> ZoneInfo:
    return _parsed(schedule.parse_timezone, name, field="timezone")


def window(value: Any) -> schedule.Window:
    return _parsed(schedule.parse_window, value, field="valid_time_range")


def windows(
    *, windows: list[str] | None, hour_range: list[int] | None
) -> tuple[schedule.MinuteRange, ...] | None:
    """The windows a body gives: `windows`, or its shorthand `valid_time_range` (never
    both), or None when it gives neither."""
    if windows is not None and hour_range is not None:
        raise InvalidTaskError("windows_and_range", field="windows")
    if windows is not None:
        return _parsed(schedule.parse_windows, windows, field="windows")
    if hour_range is not None:
        return schedule.hour_window(window(hour_range))
    return None


def weekdays(value: Any) -> frozenset[int]:
    return _parsed(schedule.parse_weekdays, value, field="weekdays")


def blackout(value: Any) -> tuple[schedule.DateRange, ...]:
    return _parsed(schedule.parse_blackout, value, field="blackout_dates")


def jitter(value: Any, *, interval_s: int) -> int:
    if type(value) is not int or not 0 <= value <= interval_s:
        raise InvalidTaskError("jitter_range", field="jitter_s", interval=interval_s, value=value)
    return value


def max_runs(value: Any) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise InvalidTaskError("max_runs_range", field="max_runs", value=value)
    return value


def misfire_policy(value: Any) -> Any:
    if value not in MISFIRE_POLICIES:
        raise InvalidTaskError("misfire_policy", field="misfire_policy", value=repr(value))
    return value


def misfire_grace(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= LIMITS["misfire_grace_s_max"]:
        raise InvalidTaskError(
            "misfire_grace_range",
            field="misfire_grace_s",
            max=LIMITS["misfire_grace_s_max"],
            value=value,
        )
    return value


def tags(value: Any, *, field: str = "tags") -> tuple[str, ...]:
    """Tags: at most `tags_max` short strings without whitespace, control characters or
    commas (a tag is part of a Redis key and of a query string); duplicates dropped."""
    if not isinstance(value, list) or len(value) > LIMITS["tags_max"]:
        raise InvalidTaskError("tags_format", field=field, max=LIMITS["tags_max"])
    for tag in value:
        if (
            not isinstance(tag, str)
            or not 1 <= len(tag) <= LIMITS["tag_chars"]
            or "," in tag
            or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in tag)
        ):
            raise InvalidTaskError(
                "tag_format", field=field, max=LIMITS["tag_chars"], value=repr(tag)
            )
    return tuple(dict.fromkeys(value))


# A Celery queue name that every broker and `celery worker -Q a,b` take as it is: it is the
# broker's list (Redis) or queue (AMQP) name, and short enough to keep the task hash compact
# (models.PIECE_BYTES; the beat's claim script reads it, so it is never stored in pieces).
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
# Celery's own queues: a worker's direct queue (`<node>.dq2`: its watchdog's probes, and
# not among the queues a worker announces), the broadcast and the event queues (fanout:
# no worker takes a task from them).
_CELERY_QUEUE_SUFFIXES = (".dq2", ".pidbox")
_CELERY_QUEUE_PREFIXES = ("celeryev.",)


def check_queue(value: Any, *, field: str = "queue") -> str | None:
    """A task's own queue: None (route by the sys_type rule or to the default queue), or a
    Celery queue name of 1..64 letters, digits and `_ . : @ -`, starting with a letter or
    digit, that is not one of Celery's internal queues."""
    if value is None:
        return None
    if not isinstance(value, str) or not _QUEUE.fullmatch(value):
        raise InvalidTaskError("queue_format", field=field, value=repr(value))
    if value.endswith(_CELERY_QUEUE_SUFFIXES) or value.startswith(_CELERY_QUEUE_PREFIXES):
        raise InvalidTaskError("queue_reserved", field=field, value=value)
    return value


def task_query(
    *,
    status: str | None = None,
    tag: str | None = None,
    sys_type: str | None = None,
    task_type: str | None = None,
    queue: str | None = None,
    q: str | None = None,
    sort: str = "created",
    limit: int = 100,
    offset: int = 0,
) -> TaskQuery:
    """The filters, order and page of a listing (query parameters, or a bulk selection)."""
    known = [s.value for s in TaskStatus]
    if status is not None and status not in known:
        raise InvalidTaskError(
            "status_unknown", field="status", value=status, known=", ".join(known)
        )
    if tag is not None:
        (tag,) = tags([tag], field="tag")
    for name, value in (("sys_type", sys_type), ("task_type", task_type)):
        if value is not None:
            check_identifier(value, field=name)
    if queue is not None:
        check_queue(queue)
    if q is not None and not 1 <= len(q) <= LIMITS["id_chars"]:
        raise InvalidTaskError("q_length", field="q", max=LIMITS["id_chars"])
    if sort not in ("created", "next"):
        raise InvalidTaskError("sort_unknown", field="sort", value=sort)
    page_limit(limit)
    # Bounded above too: Redis ranks are signed 64-bit, so a huge offset fails ZRANGE.
    if not 0 <= offset <= 1_000_000_000:
        raise InvalidTaskError("offset_range", field="offset", value=offset)
    return TaskQuery(
        status=status,
        tag=tag,
        sys_type=sys_type,
        task_type=task_type,
        queue=queue,
        q=q,
        sort="next" if sort == "next" else "created",
        offset=offset,
        limit=limit,
    )


_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# A Redis stream entry id: "<ms>" or "<ms>-<seq>".
STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


def request_id(value: str) -> str:
    """A client's id of a bulk request (its idempotency key): short, plain characters."""
    if not _REQUEST_ID.fullmatch(value):
        raise InvalidTaskError("request_id", field="request_id", value=value)
    return value


def stream_id(value: str, *, field: str) -> str:
    """A cursor that names an entry of a Redis stream (the events, the audit trail)."""
    if not STREAM_ID.fullmatch(value):
        raise InvalidTaskError("stream_id", field=field, value=value)
    return value


def page_limit(value: int) -> int:
    if not 1 <= value <= 1000:
        raise InvalidTaskError("limit_range", field="limit", value=value)
    return value


def instant(value: str | datetime, tz: ZoneInfo, *, field: str) -> int:
    """Epoch ms of an ISO datetime (naive = in `tz`), before the horizon."""
    ms = _parsed(lambda: schedule.parse_instant(value, tz, field=field), field=field)
    return check_horizon(ms, field=field)


def instant_value(value: str, *, field: str) -> datetime:
    """The datetime an ISO text names; the zone that reads a naive one comes later."""
    return _parsed(lambda: schedule.instant_value(value, field=field), field=field)


def end_value(value: str) -> date | datetime:
    """The date or datetime a `task_end_time` names; `end_ms` reads it in the task's zone."""
    return _parsed(schedule.end_value, value, field="task_end_time")


def end_ms(value: str | date | datetime, tz: ZoneInfo, *, now_ms: int, text: str) -> int:
    """The inclusive end instant of a `task_end_time` (`text` as given); it must lie in the
    future."""
    end = _parsed(schedule.parse_end, value, tz, field="task_end_time")
    assert end is not None
    check_horizon(end, field="task_end_time")
    if end < now_ms:
        raise InvalidTaskError("end_in_past", field="task_end_time", value=text)
    return end


def run_params(
    base: Mapping[str, Any], *, extra: Mapping[str, Any] | None, user: Mapping[str, str | None]
) -> dict[str, Any]:
    """The handler's run parameters: `base`, then `extra` (a body's kwargs) merged, then the
    `user_*` fields given (None removes one), within the size limit."""
    params = {**base, **(extra or {})}
    for name, value in user.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    size = len(json.dumps(params, ensure_ascii=False).encode())
    if size > LIMITS["kwargs_bytes"]:
        raise InvalidTaskError("kwargs_size", field="kwargs", size=size, max=LIMITS["kwargs_bytes"])
    return params
