"""A round runner in the test's own process, over any Redis URL (the proxy's included)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import redis

from taskdispatch.domain.models import Task
from taskdispatch.engine.beat import claim_tick
from taskdispatch.engine.handlers import HandlerRegistry, RunContext
from taskdispatch.engine.recovery import Housekeeper
from taskdispatch.engine.rounds import RoundMessage, RoundRunner
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys

__all__ = ["housekeep", "message_for", "runner_for"]


def runner_for(
    url: str, handler: Callable[[RunContext], Any], **settings: Any
) -> tuple[RoundRunner, redis.Redis]:
    """An in-process RoundRunner over `url` whose task type "probe" runs `handler`."""
    conf = Settings(redis_url=url, key_prefix="td:", **{"lease_ttl_s": 3, **settings})
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    registry = HandlerRegistry({"probe": handler, "noop": lambda ctx: {"round": ctx.round_num}})
    return RoundRunner(client, conf, registry, hostname=socket.gethostname()), client


def message_for(client: redis.Redis, task_id: str) -> RoundMessage:
    """The message a beat would publish for the task's current slot (without claiming it)."""
    task = Task.from_hash(client.hgetall(Keys("td:").task(task_id)), task_id=task_id)
    if task.next_ms is None:
        raise ValueError(f"task {task_id} has no next slot")
    return RoundMessage(task_id=task_id, fence=task.fence, slot_ms=task.next_ms)


def housekeep(keeper: Housekeeper) -> tuple[int, int]:
    """A beat's housekeeping at the keeper's clock, as its tick does it: the claim script's
    candidates (claiming nothing), then the keeper's recovery and resumes over its client
    (decoding replies); returns (lost, resumed)."""
    tick = claim_tick(
        keeper.redis,
        keeper.keys,
        now_ms=keeper.clock(),
        beat_id="test-housekeeping",
        batch=0,
        dispatch_timeout_ms=60_000,
    )
    return keeper.recover_lost(tick.lost), keeper.resume_paused(tick.resumes)
