"""Limits across accounts: at most N rounds at once, or M starts per window, among the tasks
a limit matches, exact across every worker and beat.

A limit (`Limit`) matches tasks by tag, sys_type and task_type (all given must match; none
given matches every task) and caps them with `max_concurrent` and/or `max_starts` per
`per_s`. Definitions live in one hash (`Keys.limits`), and every change bumps
`Keys.limits_version`, so a worker's copy (`LimitBook`) is checked by the admission script
itself and reloaded only when it is stale.

A round is *admitted* by one Lua call (`lua/limits_admit.lua`): the account lease, a place in every
concurrency limit and a start in every rate limit are taken together, or none is. A place
is a member of `Keys.limit_places(name)` scored by its expiry, renewed with the account
lease (`lease.py`), so the place of a round whose worker died frees itself when its lease
would have, and recovery then wakes the waiters. A round that finds a limit full waits in
`Keys.limit_waiters(name)`, ordered by its slot: it is *parked* (its due score pushed to a
deadline: the end of its window, its end date, or `lifecycle.PARK_RECHECK_MS` from now)
and *woken* (made due now) by the release of a place, so no one polls. Among waiters, the
earliest slot goes first: a round may not take a place while a valid waiter with an earlier
slot exists, which also keeps the place of a woken waiter for it while its message travels.

A slot keeps its place among the waiters of every limit it has found full (the task's
`waits`), until it is admitted or its wait ends: a round under two busy limits is then not
overtaken in one while it waits for the other, which would let it starve (each time one
limit frees, the other is taken again). Its task shows the first full limit of its last
look (`wait_limit`). docs/semantics.md ("Limits") states the guarantees, docs/redis-keys.md
the keys.

The scripts (`lua/limits_*.lua`) follow a waiter's id to its task hash, and a task's `waits`
to those limits' waiters: keys they learn only by reading them, and which a caller could
pass only by reading the waiters first, outside the atomic step that depends on them. They
are the one exception to "a script touches only the keys passed" (scripts.py): on Redis
Cluster they hold only with every key on one node (a key prefix with a hash tag).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.lifecycle import SCHEDULED_STATUS
from taskdispatch.domain.models import Task
from taskdispatch.store.keys import Keys, reply_text
from taskdispatch.store.scripts import LIMITS_ADMIT, LIMITS_LEAVE, LIMITS_RELEASE, LIMITS_WAKE

__all__ = [
    "LIMITS_MAX",
    "Admission",
    "Limit",
    "LimitBook",
    "Match",
    "admit",
    "applicable",
    "check_name",
    "limit_from_body",
    "queue_leave",
    "queue_release",
    "queue_wake_waiters",
]

WaitCode = Literal["limit_full", "rate_limited"]

# At most this many limits exist: every round is matched against all of them.
LIMITS_MAX = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
_CAPS = {"max_concurrent": 100_000, "max_starts": 1_000_000, "per_s": 7 * 86_400}
# The status a task waits in.
_WAITING_STATUS = SCHEDULED_STATUS.value
# Reading the definitions again after a lost connection: a few attempts within a second.
_READ_RETRY = Retry(
    ExponentialWithJitterBackoff(base=0.05, cap=0.5),
    5,
    supported_errors=(ConnectionError, TimeoutError, OSError),
)


@dataclass(frozen=True)
class Match:
    """Which tasks a limit covers: all given criteria must hold; none given means all tasks."""

    tag: str | None = None
    sys_type: str | None = None
    task_type: str | None = None

    def covers(self, task: Task) -> bool:
        return (
            (self.tag is None or self.tag in task.tags)
            and (self.sys_type is None or self.sys_type == task.sys_type)
            and (self.task_type is None or self.task_type == task.task_type)
        )


@dataclass(frozen=True)
class Limit:
    name: str
    match: Match
    max_concurrent: int | None = None
    max_starts: int | None = None
    per_s: int | None = None
    created_ms: int = 0
    updated_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "match": {k: v for k, v in vars(self.match).items() if v is not None},
                "max_concurrent": self.max_concurrent,
                "max_starts": self.max_starts,
                "per_s": self.per_s,
                "created_ms": self.created_ms,
                "updated_ms": self.updated_ms,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, name: str, text: str) -> Limit:
        data = json.loads(text)
        return cls(
            name=name,
            match=Match(**data["match"]),
            max_concurrent=data["max_concurrent"],
            max_starts=data["max_starts"],
            per_s=data["per_s"],
            created_ms=data["created_ms"],
            updated_ms=data["updated_ms"],
        )

    def script_args(self) -> list[str | int]:
        """The limit as the scripts read it: name, max_concurrent, max_starts, per ms (-1: none)."""
        return [
            self.name,
            -1 if self.max_concurrent is None else self.max_concurrent,
            -1 if self.max_starts is None else self.max_starts,
            -1 if self.per_s is None else self.per_s * 1000,
        ]


def check_name(name: str) -> str:
    """A limit name becomes part of Redis keys and URLs: short, plain characters."""
    if not _NAME.fullmatch(name):
        raise InvalidTaskError("limit_name", field="name", value=name)
    return name


def limit_from_body(
    name: str, body: dict[str, Any], *, now_ms: int, created_ms: int | None
) -> Limit:
    """The limit a `PUT /limits/{name}` body defines (validated); `created_ms` of the
    limit it replaces, if any."""
    check_name(name)
    match = body.get("match") or {}
    if not isinstance(match, dict) or set(match) - {"tag", "sys_type", "task_type"}:
        raise InvalidTaskError("limit_match", field="match")
    for key, value in match.items():
        if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
            raise InvalidTaskError("limit_match", field=f"match.{key}")
    caps: dict[str, int | None] = {}
    for key, cap in _CAPS.items():
        value = body.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= cap):
            raise InvalidTaskError("limit_cap_range", field=key, max=cap, value=value)
        caps[key] = value
    if caps["max_concurrent"] is None and caps["max_starts"] is None:
        raise InvalidTaskError("limit_needs_cap", field="max_concurrent")
    if (caps["max_starts"] is None) != (caps["per_s"] is None):
        raise InvalidTaskError("limit_rate_pair", field="per_s")
    return Limit(
        name=name,
        match=Match(**{k: v for k, v in match.items() if v is not None}),
        max_concurrent=caps["max_concurrent"],
        max_starts=caps["max_starts"],
        per_s=caps["per_s"],
        created_ms=now_ms if created_ms is None else created_ms,
        updated_ms=now_ms,
    )


def applicable(limits: Iterable[Limit], task: Task) -> list[Limit]:
    """The limits that cover `task`, in name order (the order a waiter picks its limit in)."""
    return sorted((lim for lim in limits if lim.match.covers(task)), key=lambda lim: lim.name)


@dataclass(frozen=True)
class Admission:
    """What `admit` decided. `code` is None when admitted, else "gone" (the task changed
    since it was read), "account_locked", "limit_full" or "rate_limited" (then `limit`, its
    use and capacity, and for a rate limit the next free start)."""

    code: str | None
    holds: tuple[str, ...] = ()
    limit: str | None = None
    in_use: int | None = None
    capacity: int | None = None
    next_start_ms: int | None = None

    @property
    def admitted(self) -> bool:
        return self.code is None


class LimitBook:
    """A worker's copy of the limit definitions, reloaded when the admission finds it stale."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.version: str | None = None
        self.limits: dict[str, Limit] = {}

    def reload(self) -> None:
        # No MULTI needed: the version is read first, so the definitions read after it are
        # at least that new, and the admission script refuses them if it moved since.
        # Read-only, so retrying a connection lost mid-way (a Redis restart) is harmless.
        def read() -> list[Any]:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.limits_version())
                pipe.hgetall(self.keys.limits())
                return list(pipe.execute())

        version, raw = _READ_RETRY.call_with_retry(read, lambda _: None)
        self.version = reply_text(version) if version is not None else "0"
        self.limits = {
            reply_text(name): Limit.from_json(reply_text(name), reply_text(text))
            for name, text in raw.items()
        }

    def current(self) -> tuple[str, dict[str, Limit]]:
        if self.version is None:
            self.reload()
        assert self.version is not None
        return self.version, self.limits


def admit(
    redis: Redis,
    keys: Keys,
    book: LimitBook,
    task: Task,
    *,
    lease_token: str,
    lease_ttl_ms: int,
    start_token: str,
    now_ms: int,
    park_until_ms: int,
) -> Admission:
    """Take the account lease and a place in every limit covering `task`, or park its slot."""
    for _ in range(5):
        version, limits = book.current()
        covering = applicable(limits.values(), task)
        reply = LIMITS_ADMIT(
            redis,
            keys=[
                keys.lock(task.account_id),
                keys.limits_version(),
                keys.task(task.task_id),
                keys.due(),
                keys.wake(),
                *(
                    key
                    for lim in covering
                    for key in (
                        keys.limit_places(lim.name),
                        keys.limit_starts(lim.name),
                        keys.limit_waiters(lim.name),
                    )
                ),
            ],
            args=[
                lease_token,
                lease_ttl_ms,
                now_ms,
                task.task_id,
                task.next_ms or now_ms,
                version,
                park_until_ms,
                keys.task(""),
                keys.limit_waiters(""),
                _WAITING_STATUS,
                start_token,
                *(arg for lim in covering for arg in lim.script_args()),
            ],
        )
        code = reply_text(reply[0])
        if code == "stale":
            book.reload()
            continue
        if code == "ok":
            return Admission(None, holds=tuple(lim.name for lim in covering if lim.max_concurrent))
        if code in ("gone", "account_locked"):
            return Admission(code)
        _, name, in_use, capacity, next_start = reply
        return Admission(
            code,
            limit=reply_text(name),
            in_use=int(in_use),
            capacity=None if int(capacity) < 0 else int(capacity),
            next_start_ms=None if int(next_start) < 0 else int(next_start),
        )
    raise RuntimeError("limit definitions changed five times during one admission")


def queue_release(
    pipe: Any,
    keys: Keys,
    task_id: str,
    holds: Sequence[str],
    *,
    book: Mapping[str, Limit],
    now_ms: int,
) -> None:
    """Queue the release of a round's places (`holds`) and the wake of their next waiters."""
    if not holds:
        return
    args: list[str | int] = [now_ms, task_id, keys.task(""), _WAITING_STATUS]
    pkeys: list[str] = []
    for name in holds:
        limit = book.get(name)
        pkeys += [keys.limit_places(name), keys.limit_waiters(name)]
        cap = limit.max_concurrent if limit is not None else None
        # A deleted limit woke all its waiters already; -1 here only frees the place.
        args += [name, -1 if cap is None else cap]
    LIMITS_RELEASE.queue(pipe, keys=[keys.due(), keys.wake(), *pkeys], args=args)


def queue_leave(pipe: Any, keys: Keys, task_id: str, limit_name: str, *, now_ms: int) -> None:
    """Queue the removal of a slot from a limit's waiters (its wait ended another way)."""
    LIMITS_LEAVE.queue(
        pipe,
        keys=[keys.limit_waiters(limit_name), keys.due(), keys.wake()],
        args=[now_ms, task_id, keys.task(""), _WAITING_STATUS, limit_name],
    )


def queue_wake_waiters(pipe: Any, keys: Keys, limit: Limit, *, deleted: bool, now_ms: int) -> None:
    """Queue the wake of a limit's waiters after `limit` was changed (or deleted)."""
    LIMITS_WAKE.queue(
        pipe,
        keys=[
            keys.limit_waiters(limit.name),
            keys.limit_places(limit.name),
            keys.due(),
            keys.wake(),
        ],
        args=[
            now_ms,
            keys.task(""),
            _WAITING_STATUS,
            limit.name,
            -1 if limit.max_concurrent is None else limit.max_concurrent,
            "1" if deleted else "0",
        ],
    )
