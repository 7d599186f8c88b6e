"""`RedisScheduler`: a Celery beat scheduler driven by the Redis due-time index.

Each tick costs one Lua call (heartbeat, dispatcher flag, claim of at most `claim_batch`
due tasks with the data their messages need, the earliest remaining due time, and the ids
to pass next time; a second call when due ids were missing from them, see `claim_tick`)
plus one Redis pipeline that publishes a Celery message for every claimed round (see
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
from collections import deque
from dataclasses import dataclass, replace
from functools import cached_property, partial
from typing import Any

from celery.beat import Scheduler
from celery.events import Event
from celery.utils.time import utcoffset
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from taskdispatch.domain.clock import now_ms
from taskdispatch.domain.lifecycle import SCHEDULED_STATUS
from taskdispatch.domain.liveness import HEARTBEAT_RETENTION_MS
from taskdispatch.domain.routing import queue_for
from taskdispatch.engine.notifier import NotifyLoop
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.connections import broker_client, store_client
from taskdispatch.store.keys import DISPATCHER_OFF, ENABLED_FIELD, Keys
from taskdispatch.store.scripts import BEAT_CLAIM, BEAT_RELEASE_CLAIMS

__all__ = [
    "HOUSEKEEPING_BATCH",
    "ROUND_TASK",
    "Claimed",
    "Prediction",
    "RedisScheduler",
    "Tick",
    "claim_tick",
]

log = logging.getLogger(__name__)

ROUND_TASK = "taskdispatch.run_round"

# The end of each sleep that is slept locally rather than in BLPOP (see _sleep_until_woken).
_LOCAL_SLEEP_S = 0.25
# Most lost rounds and most timed pauses one tick handles (each costs a transaction).
HOUSEKEEPING_BATCH = 100
# After a failed publish (broker unreachable), the next try.
_PUBLISH_RETRY_S = 1.0
# A beat ticks at least every beat_max_sleep_s (plus the tick's own work): the ids its
# prediction holds are those due by then, with this margin for the work.
_LOOKAHEAD_MARGIN_S = 1.0


@dataclass(frozen=True)
class Claimed:
    """One round a tick claimed: what its Celery message carries."""

    task_id: str
    fence: int
    slot_ms: int
    task_type: str
    sys_type: str
    account_id: str
    # The task's own queue, None when it has none (routing.queue_for).
    queue: str | None = None


@dataclass(frozen=True)
class Prediction:
    """What a beat expects due at its next tick (see `claim_tick`)."""

    # The due index's head after the last claims: (id, score ms), earliest first.
    head: tuple[tuple[str, int], ...] = ()
    # The ids just claimed: their score is the claim's hold, which the worker that runs the
    # round replaces with the next slot, often sooner (a periodic task is due again).
    claimed: tuple[str, ...] = ()

    def candidates(self, now_ms: int, batch: int) -> list[str]:
        """The ids to pass at `now_ms`: those of the head due by then, then the ones just
        claimed, at most `batch` (the claim takes at most `batch` due ids anyway)."""
        due = [task_id for task_id, score_ms in self.head if score_ms <= now_ms]
        return list(dict.fromkeys([*due, *self.claimed]))[:batch]


@dataclass(frozen=True)
class Tick:
    """What one tick's claim found (see `lua/beat_claim.lua`)."""

    enabled: bool
    # The earliest later instant at which a slot, a lease expiry or a pause's end falls due.
    wake_ms: int | None
    lost: list[str]
    resumes: list[str]
    claimed: list[Claimed]
    # What to pass to the next tick's claim.
    prediction: Prediction = Prediction()
    # Claim script calls made: 1, or 2 when due ids were missing from the prediction.
    calls: int = 1


@dataclass(frozen=True)
class _Reply:
    """One claim script reply, parsed."""

    tick: Tick
    unlisted: list[str]
    head: tuple[tuple[str, int], ...]


def _claim_call(
    redis: Redis,
    keys: Keys,
    ids: list[str],
    *,
    now_ms: int,
    beat_id: str,
    batch: int,
    dispatch_timeout_ms: int,
    housekeeping_batch: int,
    lookahead_ms: int,
) -> _Reply:
    reply = BEAT_CLAIM(
        redis,
        keys=[
            keys.due(),
            keys.dispatcher(),
            keys.beats(),
            keys.running(),
            keys.resume(),
            *(keys.task(task_id) for task_id in ids),
        ],
        args=[
            now_ms,
            dispatch_timeout_ms,
            beat_id,
            housekeeping_batch,
            HEARTBEAT_RETENTION_MS,
            ENABLED_FIELD,
            DISPATCHER_OFF,
            SCHEDULED_STATUS.value,
            batch,
            lookahead_ms,
            *ids,
        ],
    )
    n_lost, n_resumes, n_unlisted, n_head, n_claimed = (int(x) for x in reply[2:7])
    at = 7

    def take(n: int) -> list[Any]:
        nonlocal at
        part = reply[at : at + n]
        at += n
        return list(part)

    lost, resumes, unlisted = take(n_lost), take(n_resumes), take(n_unlisted)
    head_flat, rest = take(2 * n_head), take(7 * n_claimed)
    tick = Tick(
        enabled=bool(int(reply[0])),
        wake_ms=None if int(reply[1]) < 0 else int(reply[1]),
        lost=[str(x) for x in lost],
        resumes=[str(x) for x in resumes],
        claimed=[
            Claimed(str(t), int(f), int(slot), str(tt), str(st), str(a), str(q) or None)
            for t, f, slot, tt, st, a, q in (rest[i : i + 7] for i in range(0, len(rest), 7))
        ],
    )
    head = tuple(
        (str(head_flat[i]), int(float(head_flat[i + 1]))) for i in range(0, len(head_flat), 2)
    )
    return _Reply(tick, [str(x) for x in unlisted], head)


def claim_tick(
    redis: Redis,
    keys: Keys,
    *,
    now_ms: int,
    beat_id: str,
    batch: int,
    dispatch_timeout_ms: int,
    housekeeping_batch: int = HOUSEKEEPING_BATCH,
    prediction: Prediction | None = None,
    lookahead_ms: int = 0,
) -> Tick:
    """One tick's claim (a beat's tick does exactly this before it publishes).

    The claim script may touch only the keys passed to it (Redis Cluster), so it is given the
    task hashes of the ids `prediction` (the previous tick's answer) expects due; it reads
    the due ids itself and claims those it was given. Due ids it was not given (a new task,
    a slot moved earlier, no prediction yet) it returns untouched, and a second call claims
    exactly those: one round trip for the claim when the prediction holds, two when it
    misses, whatever the number of tasks stored. The answer's prediction covers the due index's head
    up to `lookahead_ms` past now (at most `batch` ids) and the ids just claimed.
    """
    call = partial(
        _claim_call,
        redis,
        keys,
        now_ms=now_ms,
        beat_id=beat_id,
        batch=batch,
        dispatch_timeout_ms=dispatch_timeout_ms,
        housekeeping_batch=housekeeping_batch,
        lookahead_ms=lookahead_ms,
    )
    first = call([] if prediction is None else prediction.candidates(now_ms, batch))
    claimed, last, calls = first.tick.claimed, first, 1
    if first.unlisted:
        # Left unlisted by this call (came due meanwhile) stay due: the wake-up is then at
        # most now, and the next tick, whose prediction's head holds them, claims them.
        last = call(first.unlisted)
        claimed, calls = claimed + last.tick.claimed, 2
    prediction = Prediction(last.head, tuple(c.task_id for c in claimed))
    return replace(last.tick, claimed=claimed, prediction=prediction, calls=calls)


class _Summary:
    """One INFO line a minute instead of one per tick: what the beat did meanwhile."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.since_s = time.monotonic()
        self.dispatched = self.housekept = 0

    def add(self, *, dispatched: int, housekept: int) -> None:
        self.dispatched += dispatched
        self.housekept += housekept
        elapsed_s = time.monotonic() - self.since_s
        if elapsed_s < self.EVERY_S:
            return
        if self.dispatched or self.housekept:
            log.info(
                "dispatched %d round(s) in the last %.0f s; %d lost round(s) recovered or "
                "timed pause(s) ended",
                self.dispatched,
                elapsed_s,
                self.housekept,
            )
        self._reset()


def _broker_probe(settings: Settings) -> Redis | None:
    """A client of the broker when it is a Redis other than the store, to see it restart
    (or fail over: a promoted replica has a run_id of its own)."""
    if settings.effective_broker_url == settings.redis_url:
        return None
    return broker_client(settings, timeout_s=5)


def _sent_event(fields: dict[str, Any], queue: str) -> dict[str, Any]:
    """The fields Celery's `send_task_message` adds to a `task-sent` event: to a queue on a
    direct exchange (taskdispatch's queues) it publishes through the default exchange."""
    return {**fields, "queue": queue, "exchange": "", "routing_key": queue}


class RedisScheduler(Scheduler):  # type: ignore[misc]
    """Dispatches due rounds from Redis and does the housekeeping, in every tick.

    Celery's own beat entries (`beat_schedule`), if a deployment adds any, run as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.td_settings = s = get_settings()
        self.keys = Keys(s.key_prefix)
        # A sleep is a BLPOP of up to beat_max_sleep_s: the socket timeout must outlast it.
        self.redis = store_client(
            s, timeout_s=s.beat_max_sleep_s + 10, on_connect=self._on_store_connect
        )
        self.housekeeper = Housekeeper(self.redis, s)
        self.beat_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # (monotonic s, task id, fence, slot ms) of recent claims, oldest first: the rounds
        # whose messages a Redis restart may have lost (see _after_restart).
        self._claims: deque[tuple[float, str, str, str]] = deque()
        self._unsent: list[tuple[str, str, str]] = []
        self._run_ids: dict[str, str] = {}
        self._store_reconnected = True
        # The queues this beat has added to Keys.published_queues (see _note_queues).
        self._queues_noted: set[str] = set()
        self._broker = _broker_probe(s)
        self._broker_checked_s = 0.0
        self._summary = _Summary()
        # What the next claim passes (see claim_tick); empty until the first tick answers.
        self._prediction = Prediction()
        # Alerts are sent from a thread of its own (started by the first tick), so that no
        # tick waits for a receiver.
        self._notifier = NotifyLoop(s)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._notifier.start()
        celery_s = super().tick(*args, **kwargs)
        try:
            self._watch_restarts()
            due_s = self.dispatch_due()
        except RedisError as exc:
            log.error("beat cannot reach Redis (%s); retrying in 1 s", exc)
            return 1.0
        wait_s = min(celery_s, due_s, self.td_settings.beat_max_sleep_s)
        if wait_s > 0.01:
            self._sleep_until_woken(wait_s)
        return 0.0

    def dispatch_due(self) -> float:
        """Claim and publish due rounds, recover lost ones, end timed pauses.

        Returns the seconds until something falls due again.
        """
        s = self.td_settings
        now = now_ms()
        tick = claim_tick(
            self.redis,
            self.keys,
            now_ms=now,
            beat_id=self.beat_id,
            batch=s.claim_batch,
            dispatch_timeout_ms=int(s.dispatch_timeout_s * 1000),
            prediction=self._prediction,
            lookahead_ms=int((s.beat_max_sleep_s + _LOOKAHEAD_MARGIN_S) * 1000),
        )
        self._prediction = tick.prediction
        if tick.claimed and not self._publish(tick.claimed):
            return _PUBLISH_RETRY_S
        changed = 0
        if tick.lost:
            changed += self.housekeeper.recover_lost(tick.lost)
        if tick.resumes:
            changed += self.housekeeper.resume_paused(tick.resumes)
        self._summary.add(dispatched=len(tick.claimed), housekept=changed)
        full = len(tick.claimed) >= s.claim_batch or HOUSEKEEPING_BATCH in (
            len(tick.lost),
            len(tick.resumes),
        )
        if full or changed:
            return 0.0  # more to do, or tasks just made due now
        if tick.wake_ms is None:
            return s.beat_max_sleep_s
        return max(0.0, (tick.wake_ms - now) / 1000)

    def _on_store_connect(self, connection: Any) -> None:
        connection.on_connect()
        self._store_reconnected = True

    def _watch_restarts(self) -> None:
        """Release the claims a restarted Redis may have lost, instead of waiting them out.

        A claimed round's message lives in the broker until a worker takes it; a Redis that
        restarts can lose it (the last second of an `everysec` AOF, or a message a worker
        had just fetched when its connection broke), and the slot would then wait out the
        dispatch timeout. A restart shows as a new `run_id`, and so does a Sentinel failover
        (the promoted replica has its own, and it may lack the last writes of the old
        master): the store's is read whenever the beat's client reconnects; a separate
        broker's every few seconds.
        """
        if self._unsent and self._release(self._unsent):
            self._unsent = []
        restarted = False
        if self._store_reconnected:
            self._store_reconnected = False
            # A restarted store may have lost the set of published queues: noted again.
            self._queues_noted.clear()
            restarted |= self._restarted("store", self.redis)
        if self._broker is not None and time.monotonic() - self._broker_checked_s > 2.0:
            self._broker_checked_s = time.monotonic()
            restarted |= self._restarted("broker", self._broker)
        if restarted:
            claims = [(task_id, fence, slot) for _, task_id, fence, slot in self._claims]
            released = self._release(claims)
            self._claims.clear()
            log.warning(
                "Redis restarted or failed over (new run_id): %d claimed round(s) whose message "
                "may be lost are due again",
                released,
            )

    def _restarted(self, role: str, client: Redis) -> bool:
        run_id = str(client.info("server")["run_id"])
        previous, self._run_ids[role] = self._run_ids.get(role), run_id
        return previous is not None and previous != run_id

    def _release(self, claims: list[tuple[str, str, str]]) -> int:
        released = 0
        for start in range(0, len(claims), 1000):
            batch = claims[start : start + 1000]
            released += int(
                BEAT_RELEASE_CLAIMS(
                    self.redis,
                    keys=[self.keys.due(), *(self.keys.task(task_id) for task_id, _, _ in batch)],
                    args=[SCHEDULED_STATUS.value, *(item for claim in batch for item in claim)],
                )
            )
        return released

    def _remember(self, claimed: list[Claimed]) -> None:
        now_s = time.monotonic()
        horizon_s = now_s - self.td_settings.dispatch_timeout_s
        while self._claims and self._claims[0][0] < horizon_s:
            self._claims.popleft()
        self._claims.extend((now_s, c.task_id, str(c.fence), str(c.slot_ms)) for c in claimed)

    def _publish(self, claimed: list[Claimed]) -> bool:
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

        A failed pipeline is not retried here (its delivery is uncertain): its claims are
        released at the next tick (see `_watch_restarts`). Returns whether it was sent.
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
                    for c in claimed:
                        queue = queue_for(queue=c.queue, sys_type=c.sys_type, settings=s)
                        if queue not in declared:
                            # Declared once per batch, then `declare=[]` below: kombu would copy
                            # the unbound Queue to declare it again for every message.
                            producer.maybe_declare(amqp.queues[queue])
                            declared.add(queue)
                        kwargs = {
                            "task_id": c.task_id,
                            "fence": c.fence,
                            "slot_ms": c.slot_ms,
                            "account_id": c.account_id,
                            "task_type": c.task_type,
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
                "publishing %d claimed round(s) failed (%s); they are claimed again shortly",
                len(claimed),
                exc,
            )
            # Released at the next tick that reaches Redis: re-claimed with a new fence, so
            # whichever copy arrives first runs the slot, once.
            self._unsent.extend((c.task_id, str(c.fence), str(c.slot_ms)) for c in claimed)
            return False
        self._remember(claimed)
        self._note_queues(declared)
        log.debug("dispatched %d round(s)", len(claimed))
        return True

    def _note_queues(self, queues: set[str]) -> None:
        """Add the queues this beat published to for the first time to the set of published
        queues, whose messages the status counts when no live worker consumes them: one SADD
        per new queue, not one per tick."""
        new = queues - self._queues_noted
        if new:
            self.redis.sadd(self.keys.published_queues(), *sorted(new))
            self._queues_noted |= new

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

    def close(self) -> None:
        self._notifier.stop()
        super().close()

    @property
    def info(self) -> str:
        return f"    . redis -> {self.keys.due()} (beat id {self.beat_id})"
