"""Limits across accounts: at most N rounds at once, or M starts per window, among the tasks
a limit matches, exact across every worker and beat.

A limit (`Limit`) matches tasks by tag, sys_type and task_type (all given must match; none
given matches every task) and caps them with `max_concurrent` and/or `max_starts` per
`per_s`. Definitions live in one hash (`Keys.limits`), and every change bumps
`Keys.limits_version`, so a worker's copy (`LimitBook`) is checked by the admission script
itself and reloaded only when it is stale.

A round is *admitted* by one Lua call (`_ADMIT`): the account lease, a place in every
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


# ---- Scripts ------------------------------------------------------------------------------

# Shared by the scripts below. `listed` says whether the comma-separated `list` holds
# `name`; `without` drops it. `valid` says whether `id` really waits for `name` at `slot`
# (a waiter deleted, paused or moved to another slot is stale); `first_waiter` drops stale
# heads; `wake` makes up to `n` parked waiters due at `at` (n < 0: all of them). A woken
# waiter stays a waiter (its place is kept for it by the head rule) but is no longer parked,
# so it is woken once. `leave` takes `id` out of the waiters and, if it was first (it may
# have been the head that held a free place back), wakes the next one. Globals set by each
# script: P (task key prefix), W (waiting status), DUE (due zset), WAKE (beats' wake list).
_COMMON = """
local function listed(list, name)
  return string.find(',' .. (list or '') .. ',', ',' .. name .. ',', 1, true) ~= nil
end
local function without(list, name)
  local kept = {}
  for item in string.gmatch(list or '', '[^,]+') do
    if item ~= name then kept[#kept + 1] = item end
  end
  return table.concat(kept, ',')
end
local function valid(id, slot, name)
  local f = redis.call('HMGET', P .. id, 'status', 'next_ms', 'waits', 'parked')
  return f[1] == W and tonumber(f[2]) == tonumber(slot) and listed(f[3], name), f[4] == '1'
end
local function first_waiter(wkey, name)
  for _ = 1, 32 do
    local head = redis.call('ZRANGE', wkey, 0, 0, 'WITHSCORES')
    if not head[1] then return nil end
    if valid(head[1], head[2], name) then return head[1], tonumber(head[2]) end
    redis.call('ZREM', wkey, head[1])
  end
  return nil
end
local function wake(wkey, name, n, at)
  local woken, i = 0, 0
  while n < 0 or woken < n do
    local batch = redis.call('ZRANGE', wkey, i, i + 63, 'WITHSCORES')
    if not batch[1] then break end
    i = i + 64
    for j = 1, #batch, 2 do
      local ok, parked = valid(batch[j], batch[j + 1], name)
      if not ok then
        redis.call('ZREM', wkey, batch[j])
        i = i - 1
      elseif parked and (n < 0 or woken < n) then
        redis.call('HDEL', P .. batch[j], 'parked')
        redis.call('ZADD', DUE, at, batch[j])
        woken = woken + 1
      end
    end
  end
  if woken > 0 then
    redis.call('LPUSH', WAKE, '1')
    redis.call('LTRIM', WAKE, 0, 0)
  end
  return woken
end
local function leave(wkey, name, id, now)
  local rank = redis.call('ZRANK', wkey, id)
  redis.call('ZREM', wkey, id)
  if rank ~= 0 then return 0 end
  return wake(wkey, name, 1, now)
end
local function room(pkey, cap, now)
  redis.call('ZREMRANGEBYSCORE', pkey, '-inf', now)
  return cap < 0 or redis.call('ZCARD', pkey) < cap
end
"""

# Admits one round, or parks it.
# KEYS[1] account lease, KEYS[2] limits version, KEYS[3] task hash, KEYS[4] due zset,
# KEYS[5] wake list; then per limit: places zset, starts zset, waiters zset.
# ARGV[1] lease token, ARGV[2] lease ttl ms, ARGV[3] now ms, ARGV[4] task id, ARGV[5] slot
# ms, ARGV[6] the limits version the caller's definitions come from, ARGV[7] park deadline
# ms, ARGV[8] task key prefix, ARGV[9] waiters key prefix, ARGV[10] the status a task waits
# in, ARGV[11] a token unique to this start; then per limit (in name order): name,
# max_concurrent, max_starts, per ms (-1: none).
# Returns {'ok'}: lease, places and starts taken, the task no longer waits;
# {'gone'}: the task is no longer pending at that slot (nothing changed);
# {'account_locked'}: another round of the account holds its lease (nothing taken; the
#   claim's message is handled, so its claim count is 0, as when parked);
# {'stale'}: the definitions changed (nothing changed; reload and call again);
# {code, name, in use, capacity, next start ms (-1: none)} with code 'limit_full' or
# 'rate_limited' for the first limit without room: nothing taken, the round parked among
# the waiters of every limit without room (and still of those it waited for before).
_ADMIT = (
    "local P, W, DUE, WAKE = ARGV[8], ARGV[10], KEYS[4], KEYS[5]\n"
    + _COMMON
    + """
local now, id, slot = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
-- Deleted, paused or moved since the worker read it: nothing to admit (and no hash to write).
local task = redis.call('HMGET', KEYS[3], 'status', 'next_ms')
if task[1] ~= W or tonumber(task[2]) ~= slot then return {'gone'} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[3], 'claims', 0)
  return {'account_locked'}
end
local version = redis.call('GET', KEYS[2]) or '0'
if version ~= ARGV[6] then return {'stale'} end
local n = (#KEYS - 5) / 3
local covering, blocked, first = {}, {}, nil
local only_rated, latest_start = true, -1
for i = 1, n do
  local pkey, skey, wkey = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  local a = 8 + 4 * i
  local name, cap, max_s, per = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
                                tonumber(ARGV[a + 3])
  covering[name] = true
  local has_room = room(pkey, cap, now)
  local next_start = -1
  local rate_full = false
  if max_s >= 0 then
    redis.call('ZREMRANGEBYSCORE', skey, '-inf', now - per)
    local started = redis.call('ZCARD', skey)
    if started >= max_s then
      rate_full = true
      local oldest = redis.call('ZRANGE', skey, started - max_s, started - max_s, 'WITHSCORES')
      next_start = tonumber(oldest[2]) + per
    end
  end
  local head, head_slot = first_waiter(wkey, name)
  local behind = head and head ~= id and (head_slot < slot or (head_slot == slot and head < id))
  if not has_room or rate_full or behind then
    local code = 'limit_full'
    if has_room and (rate_full or cap < 0) then code = 'rate_limited' end
    -- Only a rate limit with nobody ahead frees by itself (at its next start); any other
    -- wait ends with a wake.
    if code ~= 'rate_limited' or behind then only_rated = false end
    if next_start > latest_start then latest_start = next_start end
    blocked[#blocked + 1] = {wkey, name}
    if not first then
      first = {code, name, redis.call('ZCARD', pkey), cap, next_start}
    end
  end
end
-- Limits it waited for that no longer cover it (its tags or their match changed): left.
local waits = redis.call('HGET', KEYS[3], 'waits') or ''
for old in string.gmatch(waits, '[^,]+') do
  if not covering[old] then
    leave(ARGV[9] .. old, old, id, now)
    waits = without(waits, old)
  end
end
if first then
  for _, b in ipairs(blocked) do
    redis.call('ZADD', b[1], slot, id)
    if not listed(waits, b[2]) then waits = waits == '' and b[2] or waits .. ',' .. b[2] end
  end
  local due = tonumber(ARGV[7])
  if only_rated and latest_start < due then due = latest_start end
  redis.call('HSET', KEYS[3], 'wait_limit', first[2], 'wait_code', first[1], 'parked', '1',
             'claims', 0, 'waits', waits)
  if first[5] >= 0 then
    redis.call('HSET', KEYS[3], 'wait_next_ms', first[5])
  else
    redis.call('HDEL', KEYS[3], 'wait_next_ms')
  end
  redis.call('ZADD', DUE, due, id)
  return first
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local expiry = now + tonumber(ARGV[2])
for i = 1, n do
  local pkey, skey, wkey = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  local a = 8 + 4 * i
  local name, cap, max_s, per = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
                                tonumber(ARGV[a + 3])
  redis.call('ZREM', wkey, id)
  if cap >= 0 then redis.call('ZADD', pkey, expiry, id) end
  local next_start = now
  if max_s >= 0 then
    redis.call('ZADD', skey, now, ARGV[11])
    redis.call('PEXPIRE', skey, per)
    local started = redis.call('ZCARD', skey)
    if started >= max_s then
      local oldest = redis.call('ZRANGE', skey, started - max_s, started - max_s, 'WITHSCORES')
      next_start = tonumber(oldest[2]) + per
    end
  end
  -- Room left: the next waiter need not wait for a release (at the next free start, if rated).
  if cap < 0 or redis.call('ZCARD', pkey) < cap then wake(wkey, name, 1, next_start) end
end
-- HDEL, not HSET '': a task that waited for nothing is not written (a transaction WATCHing
-- it stays valid), and an empty field is not stored.
redis.call('HDEL', KEYS[3], 'wait_limit', 'wait_code', 'wait_next_ms', 'parked', 'waits')
return {'ok'}
"""
)

# Frees a round's places and wakes, in each limit that has room, its first parked waiter.
# KEYS[1] due zset, KEYS[2] wake list; then per limit: places zset, waiters zset.
# ARGV[1] now ms, ARGV[2] task id, ARGV[3] task key prefix, ARGV[4] the status a task waits
# in; then per limit: name, max_concurrent (-1: none, or unknown: the limit was deleted).
# Returns how many waiters it woke.
_RELEASE = (
    "local P, W, DUE, WAKE = ARGV[3], ARGV[4], KEYS[1], KEYS[2]\n"
    + _COMMON
    + """
local now, woken = tonumber(ARGV[1]), 0
for i = 1, (#KEYS - 2) / 2 do
  local pkey, wkey = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local name, cap = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  redis.call('ZREM', pkey, ARGV[2])
  if room(pkey, cap, now) then woken = woken + wake(wkey, name, 1, now) end
end
return woken
"""
)

# A round stops waiting for a limit (its task was paused, deleted, moved to another slot):
# it leaves the waiters, and the first parked waiter after it looks again (it may have been
# the head that held a free place back).
# KEYS[1] waiters zset, KEYS[2] due zset, KEYS[3] wake list. ARGV[1] now ms, ARGV[2] task
# id, ARGV[3] task key prefix, ARGV[4] the status a task waits in, ARGV[5] limit name.
# Returns how many waiters it woke (0 or 1).
_LEAVE = (
    "local P, W, DUE, WAKE = ARGV[3], ARGV[4], KEYS[2], KEYS[3]\n"
    + _COMMON
    + """
return leave(KEYS[1], ARGV[5], ARGV[2], tonumber(ARGV[1]))
"""
)

# Wakes the waiters of one limit after its definition changed.
# KEYS[1] waiters zset, KEYS[2] places zset, KEYS[3] due zset, KEYS[4] wake list.
# ARGV[1] now ms, ARGV[2] task key prefix, ARGV[3] the status a task waits in, ARGV[4]
# limit name, ARGV[5] max_concurrent (-1: none), ARGV[6] 1 when the limit is gone (every
# waiter then stops waiting and is due now), else wake as many as it has free places (one,
# for a rate limit: it wakes the next).
# Returns how many waiters it woke.
_WAKE = (
    "local P, W, DUE, WAKE = ARGV[2], ARGV[3], KEYS[3], KEYS[4]\n"
    + _COMMON
    + """
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[5])
if ARGV[6] == '1' then
  -- The limit is gone: every waiter stops waiting for it and is due now (it keeps its place
  -- among the waiters of its other limits, and looks again).
  local woken = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local f = redis.call('HMGET', P .. id, 'status', 'waits', 'wait_limit')
    if f[1] == W and listed(f[2], ARGV[4]) then
      local waits = without(f[2], ARGV[4])
      redis.call('HDEL', P .. id, 'parked')
      if waits == '' then
        redis.call('HDEL', P .. id, 'waits')
      else
        redis.call('HSET', P .. id, 'waits', waits)
      end
      if waits == '' or f[3] == ARGV[4] then
        redis.call('HDEL', P .. id, 'wait_limit', 'wait_code', 'wait_next_ms')
      end
      redis.call('ZADD', DUE, now, id)
      woken = woken + 1
    end
  end
  if woken > 0 then
    redis.call('LPUSH', WAKE, '1')
    redis.call('LTRIM', WAKE, 0, 0)
  end
  return woken
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local free = 1
if cap >= 0 then free = cap - redis.call('ZCARD', KEYS[2]) end
if free <= 0 then return 0 end
return wake(KEYS[1], ARGV[4], free, now)
"""
)


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
    script = redis.register_script(_ADMIT)
    for _ in range(5):
        version, limits = book.current()
        covering = applicable(limits.values(), task)
        reply = script(
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
    pipe.eval(_RELEASE, 2 + len(pkeys), keys.due(), keys.wake(), *pkeys, *args)


def queue_leave(pipe: Any, keys: Keys, task_id: str, limit_name: str, *, now_ms: int) -> None:
    """Queue the removal of a slot from a limit's waiters (its wait ended another way)."""
    pipe.eval(
        _LEAVE,
        3,
        keys.limit_waiters(limit_name),
        keys.due(),
        keys.wake(),
        now_ms,
        task_id,
        keys.task(""),
        _WAITING_STATUS,
        limit_name,
    )


def queue_wake_waiters(pipe: Any, keys: Keys, limit: Limit, *, deleted: bool, now_ms: int) -> None:
    """Queue the wake of a limit's waiters after `limit` was changed (or deleted)."""
    pipe.eval(
        _WAKE,
        4,
        keys.limit_waiters(limit.name),
        keys.limit_places(limit.name),
        keys.due(),
        keys.wake(),
        now_ms,
        keys.task(""),
        _WAITING_STATUS,
        limit.name,
        -1 if limit.max_concurrent is None else limit.max_concurrent,
        "1" if deleted else "0",
    )
