"""Fixtures of the fault tests.

The process fixtures are the e2e suite's own (`stack`, `dispatcher`, imported below so
that this directory sees them, with the hook that tells `stack` whether a test failed).
Added here: a replacement worker for a stack (`add_worker`), a private Redis with
append-only persistence for restart tests, an in-process round runner, and a TCP proxy
that cuts connections (`tests/faults/proxy.py`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.handlers import HandlerRegistry, RunContext
from taskdispatch.keys import Keys
from taskdispatch.rounds import RoundMessage, RoundRunner
from taskdispatch.settings import Settings
from tests.e2e.conftest import (  # noqa: F401  (fixtures and hook, re-exported for this dir)
    Proc,
    Stack,
    dispatcher,
    pytest_runtest_makereport,
    stack,
)
from tests.faults.proxy import FlakyProxy

__all__ = ["add_worker", "message_for", "runner_for"]


def add_worker(s: Stack, *, concurrency: int = 2, queues: str = "celery") -> int:
    """Start one more worker in stack `s` (node w<n>@host, its own log); returns its index.

    `Stack.start` numbers workers from 1 on every call, so a replacement started with it
    would reuse a node name and a log file; this keeps both unique.
    """
    i = len(s.workers)
    args = ["worker", "-l", "info", "-P", "prefork", "-c", str(concurrency)]
    args += ["-n", f"w{i + 1}@%h", "-Q", queues, "--without-mingle", "--without-gossip"]
    proc = Proc(f"worker {i + 1}", args, s._proc_env, s.log_dir / f"worker{i + 1}.log")
    s.workers.append(proc)
    s._wait_ready(proc, lambda: f"{s.node(i)} ready." in proc.log())
    return i


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private Redis with appendonly=yes, restartable on the same port and data dir."""
    server = EmbeddedRedis(data_dir=tmp_path / "redis-aof", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy(redis_url: str, redis_server: EmbeddedRedis) -> Iterator[FlakyProxy]:
    """A flaky TCP proxy in front of the (emptied) session Redis."""
    with FlakyProxy(redis_server.port) as p:
        yield p


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
    raw = client.hgetall(Keys("td:").task(task_id))
    return RoundMessage(task_id=task_id, fence=int(raw["fence"]), slot_ms=int(raw["next_ms"]))
