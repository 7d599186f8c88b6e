"""`RedisScheduler`: a Celery beat scheduler driven by the Redis due-time index.

Each tick costs one Lua call (heartbeat, dispatcher flag, claim of at most `claim_batch`
due tasks with the data their messages need, and the earliest remaining due time) plus
one Redis pipeline that publishes a Celery message for every claimed round (see
`_publish`), so it grows with the number of due tasks, never with the number stored.
A claim pushes the task's due score forward by the dispatch timeout and bumps its fence:
if the message is lost before a worker starts it, the task is due again after the
timeout and the stale message is dropped by its fence. Several beats can run at once;
the claim is atomic, so each slot is dispatched once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from functools import cached_property
from typing import Any

from celery.beat import Scheduler
from celery.events import Event
from celery.utils.time import utcoffset
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from taskdispatch.keys import Keys
from taskdispatch.settings import Settings, get_settings

__all__ = ["ROUND_TASK", "RedisScheduler", "queue_for"]

log = logging.getLogger(__name__)

ROUND_TASK = "taskdispatch.run_round"

# The end of each sleep that is slept locally rather than in BLPOP (see _sleep_until_woken).
_LOCAL_SLEEP_S = 0.25

# KEYS[1] due zset, KEYS[2] dispatcher hash, KEYS[3] beats zset.
# ARGV[1] now ms, ARGV[2] batch size, ARGV[3] dispatch timeout ms, ARGV[4] beat id,
# ARGV[5] task key prefix (Keys.task(""); task hashes are read by id, single-node Redis).
# Returns {enabled 0|1, earliest remaining due score or -1,
#          then per claimed task: id, fence, slot ms, task_type, sys_type, account_id}.
# A claim holds the slot for the dispatch timeout; each further claim of the SAME slot (its
# message is lost, or only waiting in a long queue: the two look alike from here) holds it
# twice as long, up to 32x (hash fields claimed_slot, claims). In a backlog the queue then
# gets a logarithmic number of copies of a waiting message, not one per timeout, which had
# buried the useful messages under stale ones until no round ran at all.
_CLAIM = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)
if redis.call('HGET', KEYS[2], 'enabled') == '0' then return {0, -1} end
local out = {1, -1}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local timeout = tonumber(ARGV[3])
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local f = redis.call('HMGET', key, 'status', 'next_ms', 'task_type', 'sys_type', 'account_id',
                       'claimed_slot', 'claims')
  if f[1] ~= 'pending' or not f[2] or f[2] == '' then
    redis.call('ZREM', KEYS[1], id)
  else
    local fence = redis.call('HINCRBY', key, 'fence', 1)
    local claims = 1
    if f[6] == f[2] and f[7] then claims = tonumber(f[7]) + 1 end
    redis.call('HSET', key, 'claimed_slot', f[2], 'claims', claims)
    local hold = timeout
    for _ = 2, math.min(claims, 6) do hold = hold * 2 end
    redis.call('ZADD', KEYS[1], now + hold, id)
    for _, v in ipairs({id, fence, f[2], f[3], f[4], f[5]}) do table.insert(out, v) end
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head[2] then out[2] = head[2] end
return out
"""


def queue_for(sys_type: str, settings: Settings) -> str:
    """The Celery queue of a round: its sys_type when routing by it is on."""
    return sys_type if settings.route_by_sys_type else settings.default_queue


def _sent_event(fields: dict[str, Any], queue: str) -> dict[str, Any]:
    """The fields Celery's `send_task_message` adds to a `task-sent` event: to a queue on a
    direct exchange (taskdispatch's queues) it publishes through the default exchange."""
    return {**fields, "queue": queue, "exchange": "", "routing_key": queue}


class RedisScheduler(Scheduler):  # type: ignore[misc]
    """Dispatches due rounds from Redis; Celery's own entries (housekeeping) run as usual."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.td_settings = get_settings()
        self.keys = Keys(self.td_settings.key_prefix)
        self.redis = Redis.from_url(
            self.td_settings.redis_url, decode_responses=True, health_check_interval=10
        )
        self.beat_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._claim = self.redis.register_script(_CLAIM)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        housekeeping_s = super().tick(*args, **kwargs)
        try:
            due_s = self.dispatch_due()
        except RedisError as exc:
            log.error("beat cannot reach Redis (%s); retrying in 1 s", exc)
            return 1.0
        wait_s = min(housekeeping_s, due_s, self.td_settings.beat_max_sleep_s)
        if wait_s > 0.01:
            self._sleep_until_woken(wait_s)
        return 0.0

    def dispatch_due(self) -> float:
        """Claim and publish due rounds; returns seconds until the next one is due."""
        s = self.td_settings
        now = time.time_ns() // 1_000_000
        reply = self._claim(
            keys=[self.keys.due(), self.keys.dispatcher(), self.keys.beats()],
            args=[
                now,
                s.claim_batch,
                int(s.dispatch_timeout_s * 1000),
                self.beat_id,
                self.keys.task(""),
            ],
        )
        enabled, head = int(reply[0]), float(reply[1])
        claimed = [reply[i : i + 6] for i in range(2, len(reply), 6)]
        if claimed:
            self._publish(claimed)
        if len(claimed) >= s.claim_batch:
            return 0.0
        if not enabled or head < 0:
            return s.beat_max_sleep_s
        return max(0.0, (head - now) / 1000)

    def _publish(self, claimed: list[list[Any]]) -> None:
        """Publish one Celery message per claimed round, all through one Redis pipeline.

        `app.send_task` spends about 1 ms of Python and a broker round trip on every message,
        which capped a beat at ~1-1.5k rounds/s (docs/benchmarks.md). The messages here are
        still Celery's own: `as_task_v2` builds each one and `send_task_message` routes it
        and fires the publish signals, as `send_task` does. Only the transport step changes:
        kombu's `Producer.batch()` buffers the resulting LPUSH commands and sends them as one
        pipeline when the block ends; a transport that cannot batch safely publishes each
        message at once, as before.

        The `task-sent` events (Flower shows a round from them before a worker takes it) go
        in the same pipeline as ONE `task.multi` event message listing them all, the way a
        Celery worker sends its buffered task events; every event receiver (Flower, `celery
        events`) unpacks such lists. One event message per round cost as much as the round's
        own message and halved the beat's rate.

        A failed pipeline is not retried here (its delivery is uncertain): the rounds stay
        claimed, so they are due again when their claim expires and are re-claimed with a
        new fence, which makes any message of this batch that did arrive stale.
        """
        s = self.td_settings
        amqp = self.app.amqp
        sent_events: list[dict[str, Any]] | None = (
            [] if self.app.conf.task_send_sent_event else None
        )
        try:
            with self.app.producer_or_acquire() as producer:
                declared: set[str] = set()
                # Room for every command of the batch (an LPUSH per message, PEXPIREs for
                # expiring queues, the event PUBLISH), so that it leaves as one pipeline.
                with producer.batch(max_size=8 * len(claimed) + 8):
                    for task_id, fence, slot_ms, task_type, sys_type, account_id in claimed:
                        queue = queue_for(sys_type, s)
                        if queue not in declared:
                            # Declared once per batch, then `declare=[]` below: kombu would copy
                            # the unbound Queue to declare it again for every message.
                            producer.maybe_declare(amqp.queues[queue])
                            declared.add(queue)
                        kwargs = {
                            "task_id": task_id,
                            "fence": int(fence),
                            "slot_ms": int(slot_ms),
                            "account_id": account_id,
                            "task_type": task_type,
                        }
                        message = amqp.as_task_v2(
                            str(uuid.uuid4()),
                            ROUND_TASK,
                            kwargs=kwargs,
                            # What Celery's saferepr gives for these short ids and ints, at a
                            # tenth of its cost; Flower and `celery inspect` show these.
                            argsrepr="()",
                            kwargsrepr=repr(kwargs),
                            reply_to=self.app.thread_oid,
                            soft_time_limit=s.round_time_limit_s,
                            time_limit=s.round_time_limit_s + 30,
                            create_sent_event=sent_events is not None,
                        )
                        if sent_events is not None:
                            # Collected for the one event message below, not sent one by one.
                            sent_events.append(_sent_event(message.sent_event, queue))
                            message = message._replace(sent_event=None)
                        amqp.send_task_message(
                            producer,
                            ROUND_TASK,
                            message,
                            queue=queue,
                            declare=[],
                            # Inside a batch a publish only buffers; retrying is meaningless.
                            retry=False,
                        )
                    if sent_events:
                        self._publish_sent_events(producer, sent_events)
        except (KombuError, RedisError, OSError) as exc:
            log.error(
                "publishing %d claimed round(s) failed (%s); they are re-claimed when their "
                "claim expires",
                len(claimed),
                exc,
            )
            return
        log.info("dispatched %d round(s)", len(claimed))

    @cached_property
    def _events(self) -> Any:
        """Celery's event dispatcher of this app: hostname, pid, clock and exchange of events."""
        return self.app.events.Dispatcher(enabled=False)

    def _publish_sent_events(self, producer: Any, fields: list[dict[str, Any]]) -> None:
        """All `task-sent` events of a batch as one `task.multi` message (see `_publish`).

        Built as `EventDispatcher` builds events and published as it publishes them (exchange,
        serializer, headers, delivery mode), only as a list, as a worker's buffered events are.
        """
        events = self._events
        offset = utcoffset()
        batch = [
            Event(
                "task-sent",
                hostname=events.hostname,
                utcoffset=offset,
                pid=events.pid,
                clock=events.clock.forward(),
                **item,
            )
            for item in fields
        ]
        producer.publish(
            batch,
            routing_key="task.multi",
            exchange=events.exchange.name,
            declare=[events.exchange],
            serializer=events.serializer,
            headers=events.headers,
            delivery_mode=events.delivery_mode,
            retry=False,
        )

    def _sleep_until_woken(self, wait_s: float) -> None:
        """Sleep until the next due time, but wake when a change makes a task due sooner.

        Redis ends a BLPOP timeout only on its server tick (10 per second by default), up to
        100 ms late (docs/benchmarks.md, section 3), so the last stretch is slept here: a
        wake-up in it waits at most that stretch, and due rounds start on time.
        """
        deadline = time.monotonic() + wait_s
        try:
            if wait_s > _LOCAL_SLEEP_S and self.redis.blpop(
                [self.keys.wake()], timeout=wait_s - _LOCAL_SLEEP_S
            ):
                return
        except RedisError:
            deadline = min(deadline, time.monotonic() + 1.0)
        time.sleep(max(0.0, deadline - time.monotonic()))

    @property
    def info(self) -> str:
        return f"    . redis -> {self.keys.due()} (beat id {self.beat_id})"
