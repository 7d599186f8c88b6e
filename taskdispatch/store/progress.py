"""Live progress of a round: what its handler says it is doing, shown while the round runs.

A handler calls `ctx.progress("message", fraction=None)` as often as it likes. The call only
stores the latest value in memory: no lock, no I/O, so it is safe from any thread, from inside
an event loop, and costs the round nothing. One thread per process (`Flusher`, started lazily
after a fork, like the lease renewer) writes what changed, for every round of the process in
one pipeline, at most once per `FLUSH_INTERVAL_S` per round: a handler reporting in a tight
loop costs Redis one write a second.

Where it goes: a key of its own per task (`Keys.progress`), not the task hash, because every
change of the task hash is a WATCHed transaction that a write every second would make retry.
Each write is one script that writes only while the task's `run_id` is still the reporting
round's, and adds the `round.progress` event in the same step. The transaction that ends the
round (the worker's final write, recovery's lost-round write) deletes the key and closes the
process's reporter (`queue_progress_clear`): a write racing the end either lands before it
and is deleted by it, or finds another `run_id` and writes nothing, so a round that ended is
never shown again. The key lives `TTL_LEASES` lease TTLs and is renewed while the round runs:
the progress of a worker that died disappears by itself. Readers still show a value only
when its `run_id` is the task's round in progress (`current_progress`).

A bad argument never fails the round: a message is turned into text and cut to
`MESSAGE_MAX` characters; a fraction outside [0, 1] is clamped, one that is not a number is
dropped (one warning per round for either).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from taskdispatch.domain.models import Task
from taskdispatch.settings import Settings
from taskdispatch.store.events import MAX_EVENTS, event_fields
from taskdispatch.store.keys import Keys
from taskdispatch.store.scripts import PROGRESS_WRITE

__all__ = [
    "EVENT",
    "FLUSH_INTERVAL_S",
    "MESSAGE_MAX",
    "TTL_LEASES",
    "Flusher",
    "ProgressReporter",
    "RoundProgress",
    "current_progress",
    "queue_progress_clear",
]

log = logging.getLogger(__name__)

# The longest message kept (characters); a longer one is cut and ends with "…".
MESSAGE_MAX = 200
# At most one write per round per this many seconds.
FLUSH_INTERVAL_S = 1.0
# The progress key's TTL in lease TTLs; renewed every lease TTL while the round runs.
TTL_LEASES = 3
EVENT = "round.progress"


@dataclass(frozen=True)
class RoundProgress:
    """What the handler of round `run_id` last reported, and when (epoch ms)."""

    run_id: str
    message: str
    fraction: float | None
    at_ms: int

    def to_json(self) -> str:
        value = {
            "run_id": self.run_id,
            "message": self.message,
            "fraction": self.fraction,
            "at_ms": self.at_ms,
        }
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RoundProgress | None:
        """The stored value, or None when it cannot be read (a shape this release does not
        know): progress is shown, never relied on."""
        try:
            data = json.loads(text)
            fraction = data.get("fraction")
            return cls(
                run_id=str(data["run_id"]),
                message=str(data["message"]),
                fraction=None if fraction is None else float(fraction),
                at_ms=int(data["at_ms"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def current_progress(run_id: str | None, raw: str | bytes | None) -> RoundProgress | None:
    """The stored progress `raw` when it belongs to the task's round in progress `run_id`;
    None when no round runs or the value is an earlier round's."""
    if run_id is None or raw is None:
        return None
    progress = RoundProgress.from_json(raw)
    return progress if progress is not None and progress.run_id == run_id else None


class ProgressReporter:
    """The progress of one round: the handler's thread calls `report` (through
    `RunContext.progress`), the process's `Flusher` writes it.

    The two threads share three attributes, each written by a single store (atomic): the
    handler stores `_latest` *before* it looks at `_queued`, the flusher clears `_queued`
    *before* it reads `_latest`, so no report is left unwritten and each one wakes the
    flusher at most once per write.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        task_id: str,
        account_id: str,
        run_id: str,
        round_num: int,
        worker: str,
        ttl_ms: int,
        clock_ms: Callable[[], int],
        flusher: Flusher | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.task_id = task_id
        self.account_id = account_id
        self.run_id = run_id
        self.round_num = round_num
        self.worker = worker
        self.ttl_ms = ttl_ms
        self.clock_ms = clock_ms
        self.flusher = flusher or _flusher
        self._latest: RoundProgress | None = None
        self._queued = False
        self._closed = False
        self._warned = False
        # The flusher's alone: the last value written and when (on the flusher's clock).
        self.written: RoundProgress | None = None
        self.written_s = -math.inf

    @classmethod
    def for_round(
        cls,
        task: Task,
        redis: Redis,
        settings: Settings,
        *,
        worker: str,
        clock_ms: Callable[[], int],
    ) -> ProgressReporter:
        """The reporter of `task`'s round in progress (started: it has its `run_id`)."""
        assert task.run_id is not None
        return cls(
            redis,
            Keys(settings.key_prefix),
            task_id=task.task_id,
            account_id=task.account_id,
            run_id=task.run_id,
            round_num=task.round_num + 1,
            worker=worker,
            ttl_ms=int(TTL_LEASES * settings.lease_ttl_s * 1000),
            clock_ms=clock_ms,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> bool:
        """A value was reported that the flusher has not taken yet."""
        return self._queued

    def report(self, message: object, fraction: object = None) -> None:
        """Keep `message` and `fraction` as the round's latest progress (never raises)."""
        if self._closed:
            return
        self._latest = RoundProgress(
            self.run_id, self._text(message), self._fraction(fraction), self.clock_ms()
        )
        if not self._queued:
            self._queued = True
            self.flusher.add(self)

    def take(self) -> RoundProgress | None:
        """The latest value, for the flusher to write now."""
        self._queued = False
        return self._latest

    def retake(self) -> None:
        """The write of the value taken failed: take the latest again at the next step."""
        self._queued = True

    def close(self) -> None:
        """The round is ending: nothing more of it is written."""
        self._closed = True

    def queue_write(self, pipe: Any, value: RoundProgress, *, tell: bool) -> None:
        """Queue the conditional write of `value` (and its event when `tell`)."""
        kind, data = "", ""
        if tell:
            fields = event_fields(
                EVENT,
                task_id=self.task_id,
                account_id=self.account_id,
                round_num=self.round_num,
                worker=self.worker,
                progress=value.message,
                fraction=value.fraction,
                progress_ms=value.at_ms,
            )
            kind, data = fields["type"], fields["data"]
        keys = [self.keys.task(self.task_id), self.keys.progress(self.task_id), self.keys.events()]
        args: list[str | int] = [self.run_id, value.to_json(), self.ttl_ms, MAX_EVENTS, kind, data]
        PROGRESS_WRITE.queue(pipe, keys=keys, args=args)

    def _text(self, message: object) -> str:
        if isinstance(message, str):
            text = message
        else:
            try:
                text = str(message)
            except Exception:  # a handler's object whose __str__ fails: progress never raises
                text = f"<{type(message).__name__}>"
            self._warn(f"a progress message of type {type(message).__name__} was made text")
        return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"

    def _fraction(self, fraction: object) -> float | None:
        if fraction is None:
            return None
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            self._warn(f"a progress fraction of type {type(fraction).__name__} was left out")
            return None
        value = float(fraction)
        if math.isnan(value):
            self._warn("a progress fraction NaN was left out")
            return None
        if not 0.0 <= value <= 1.0:
            self._warn(f"the progress fraction {value} was clamped into [0, 1]")
            return min(1.0, max(0.0, value))
        return value

    def _warn(self, text: str) -> None:
        # Once per round: a handler reporting in a loop must not flood the worker log.
        if not self._warned:
            self._warned = True
            log.warning("round of task %s: %s", self.task_id, text)


class Flusher:
    """Writes the progress of every round of this process: one pipeline per step.

    `step` does one pass (tests call it directly, with their own clock); `add` hands it a
    reporter with something new and, for the process-wide flusher, starts its thread the
    first time in each process (a prefork pool child starts its own).
    """

    def __init__(
        self,
        *,
        interval_s: float = FLUSH_INTERVAL_S,
        clock_s: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.interval_s = interval_s
        self.clock_s = clock_s
        self.background = background
        self._inbox: queue.SimpleQueue[ProgressReporter] = queue.SimpleQueue()
        # The flusher's alone: every reporter of a round not ended yet.
        self._open: set[ProgressReporter] = set()
        # Each task's reporter in this process, so that the round's end can close it.
        self._rounds: dict[str, ProgressReporter] = {}
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._failing = False

    def add(self, reporter: ProgressReporter) -> None:
        """`reporter` has a new value (from the handler's thread; never blocks)."""
        if self.background and self._pid != os.getpid():
            self._start()
        self._rounds[reporter.task_id] = reporter
        self._inbox.put(reporter)

    def close_task(self, task_id: str) -> None:
        """The round of `task_id` in this process is ending: write nothing more of it."""
        reporter = self._rounds.pop(task_id, None)
        if reporter is not None:
            reporter.close()

    def forget(self) -> None:
        """A forked child: the parent's rounds and thread are not its own."""
        self._inbox = queue.SimpleQueue()
        self._open = set()
        self._rounds = {}
        self._start_lock = threading.Lock()
        self._pid = None

    def step(self) -> float | None:
        """Write what is due now; returns the seconds until something may be due next, or
        None when no round of the process reports progress."""
        while True:
            try:
                self._open.add(self._inbox.get_nowait())
            except queue.Empty:
                break
        now = self.clock_s()
        batch: list[tuple[ProgressReporter, RoundProgress, bool]] = []
        for reporter in list(self._open):
            if reporter.closed:
                self._open.discard(reporter)
            elif reporter.pending:
                # Not before its interval is over, and no renewal meanwhile: one write then.
                if now >= reporter.written_s + self.interval_s:
                    value = reporter.take()
                    if value is not None:
                        batch.append((reporter, value, True))
            elif reporter.written is not None and now >= reporter.written_s + _renew_s(reporter):
                batch.append((reporter, reporter.written, False))
        if batch:
            self._write(batch, now)
        return self._wait_s(now)

    def _write(self, batch: list[tuple[ProgressReporter, RoundProgress, bool]], now: float) -> None:
        clients: dict[int, list[tuple[ProgressReporter, RoundProgress, bool]]] = {}
        for item in batch:
            clients.setdefault(id(item[0].redis), []).append(item)
        for items in clients.values():
            try:
                with items[0][0].redis.pipeline(transaction=False) as pipe:
                    for reporter, value, tell in items:
                        reporter.queue_write(pipe, value, tell=tell)
                    replies = pipe.execute()
            except RedisError as exc:
                if not self._failing:
                    log.warning("writing the progress of %d rounds failed: %s", len(items), exc)
                self._failing = True
                for reporter, _, tell in items:
                    reporter.written_s = now
                    if tell:
                        reporter.retake()
                continue
            self._failing = False
            for (reporter, value, _), written in zip(items, replies, strict=True):
                reporter.written_s = now
                reporter.written = value
                if not int(written):
                    # Its round ended (or was declared lost) before this write: done with it.
                    reporter.close()
                    self._open.discard(reporter)
                    if self._rounds.get(reporter.task_id) is reporter:
                        self._rounds.pop(reporter.task_id, None)

    def _wait_s(self, now: float) -> float | None:
        if not self._open:
            return None
        due = min(r.written_s + (self.interval_s if r.pending else _renew_s(r)) for r in self._open)
        return max(0.0, due - now)

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._inbox = queue.SimpleQueue()
            self._open = set()
            self._rounds = {}
            threading.Thread(target=self._run, name="progress-flusher", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            try:
                wait_s = self.step()
            except Exception:  # the thread serves every later round of the process: it stays
                log.exception("writing round progress failed")
                wait_s = self.interval_s
            with contextlib.suppress(queue.Empty):
                self._open.add(self._inbox.get(timeout=wait_s))


def _renew_s(reporter: ProgressReporter) -> float:
    """How often the key of a round that reports nothing new is kept alive."""
    return reporter.ttl_ms / 1000 / TTL_LEASES


_flusher = Flusher()
os.register_at_fork(after_in_child=_flusher.forget)


def queue_progress_clear(
    pipe: Any, keys: Keys, task_id: str, *, flusher: Flusher | None = None
) -> None:
    """Queue the deletion of the task's progress into the transaction that ends its round
    (the worker's final write, recovery's lost-round write), and close this process's
    reporter of that round (when it runs here) before that transaction is sent: nothing of
    the round is written after it, and a write already in flight finds the round's
    `run_id` gone and writes nothing (`lua/progress_write.lua`)."""
    (flusher or _flusher).close_task(task_id)
    pipe.delete(keys.progress(task_id))
