"""Proof that a worker consumes, and an exit when it does not.

A Celery worker on Redis can stay alive after a broker reconnect while its task consumer
receives nothing (celery/celery#8030, #8384, #10205; docs/reliability.md): its process and
even `celery inspect ping` still answer. So a worker proves consumption instead: every
message its task consumer receives counts, and when none came for `probe_every_s`, the
worker sends itself a probe through its own direct queue (`<node>.dq2`, consumed by that
same task consumer). Only while consumption is proven does the worker write its heartbeat
(the `workers` index, which `workers_alive` and `/health/ready` count). A probe that stays
unanswered for `deaf_after_s` while the broker answers and the worker had room to fetch
means the consumer is deaf: the worker exits with `EXIT_DEAF`, so that its supervisor
(compose's restart policy, Kubernetes, `make run`) starts a fresh one.

A worker in its warm shutdown stops fetching on purpose while its rounds finish, so silence
proves nothing then: once it is shutting down, the watchdog withdraws the worker's heartbeat
(a draining worker takes no new round, so it no longer counts as a consumer) and stands
down for good. It never cuts the rounds the shutdown is waiting for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_DEAF", "PROBE_TASK", "ConsumeWatchdog"]

log = logging.getLogger(__name__)

PROBE_TASK = "taskdispatch.probe"
# EX_TEMPFAIL: "try again later", which is what a restart of a deaf worker is.
EXIT_DEAF = 75
_STEP_S = 1.0


class ConsumeWatchdog:
    """The decision, as a step function of the facts (unit-tested), and its thread."""

    def __init__(
        self,
        *,
        send_probe: Callable[[], None],
        record_alive: Callable[[], None],
        broker_answers: Callable[[], bool],
        saturated: Callable[[], bool],
        on_deaf: Callable[[str], None],
        shutting_down: Callable[[], bool],
        withdraw: Callable[[], None],
        probe_every_s: float,
        deaf_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send_probe = send_probe
        self.record_alive = record_alive
        self.broker_answers = broker_answers
        self.saturated = saturated
        self.on_deaf = on_deaf
        self.shutting_down = shutting_down
        self.withdraw = withdraw
        self.probe_every_s = probe_every_s
        self.deaf_after_s = deaf_after_s
        self.clock = clock
        self.last_received = clock()
        self.probe_sent: float | None = None
        self._stop = threading.Event()

    def received(self) -> None:
        """Called by the consumer for every message it receives (a round or a probe)."""
        self.last_received = self.clock()

    def step(self) -> str | None:
        """One look; returns why the consumer is deaf, or None."""
        if self._stop.is_set():
            return None
        if self.shutting_down():
            # Its consumer stopped fetching on purpose: no heartbeat, no probe, no verdict,
            # now or later. Stopped first: if the withdrawal fails, the heartbeat ages out.
            self.stop()
            self.probe_sent = None
            log.debug("consume watchdog: the worker is shutting down; standing down")
            self.withdraw()
            return None
        now = self.clock()
        # An answered probe proves consumption even when its answer is already older than
        # the probe period (a period as short as the step).
        answered = self.probe_sent is not None and self.last_received >= self.probe_sent
        if now - self.last_received < self.probe_every_s or answered or self.saturated():
            # Consuming, or not asking for messages because every prefetch slot is taken.
            self.probe_sent = None
            self.record_alive()
            return None
        if not self.broker_answers():
            # The broker is away: reconnecting is Celery's job; judge once it is back.
            self.probe_sent = None
            return None
        if self.probe_sent is None:
            self.send_probe()
            self.probe_sent = now
            log.debug(
                "consume watchdog: no message for %.0f s; probe sent", now - self.last_received
            )
            return None
        waited = now - self.probe_sent
        if waited > self.deaf_after_s:
            return (
                f"the worker received no message, not even its own probe, for {waited:.0f} s "
                "although the broker answers: its consumer is deaf"
            )
        return None

    def start(self) -> None:
        threading.Thread(target=self._run, name="consume-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(_STEP_S):
            try:
                reason = self.step()
            except Exception as exc:  # a failed probe or heartbeat: look again next step
                log.warning("consume watchdog: %s", exc)
                self.probe_sent = None
                continue
            if reason is not None:
                self.on_deaf(reason)
                return
