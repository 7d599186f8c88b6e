"""Shared pytest fixtures: the private Redis, and the real worker/beat stacks.

Helpers live in `tests/support/` and are imported from there; conftest files only hold
fixtures and hooks.

Redis: the test session ALWAYS starts its own private ``redis-server`` on a free 127.0.0.1 port
and never reuses one found on the machine.  A developer's Redis (localhost:6379 or whatever
TASKDISPATCH_REDIS_URL points at) may hold real data and live Celery queues, and tests flush the
database before every test; doing that to a server we did not start would destroy someone's
work.  The private server's URL is exported as TASKDISPATCH_REDIS_URL for the whole session so
code under test, and any subprocess it spawns, talks to it rather than to the developer's Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.service.dispatcher import TaskDispatcher
from tests.support.proxy import FlakyProxy
from tests.support.stack import Stack, e2e_env, settings_of


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private Redis for the whole session, exported as TASKDISPATCH_REDIS_URL."""
    with EmbeddedRedis(appendonly=False) as server, pytest.MonkeyPatch.context() as mp:
        # MonkeyPatch writes os.environ, so subprocesses inherit it; restored on exit.
        mp.setenv("TASKDISPATCH_REDIS_URL", server.url)
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """URL of the session Redis, emptied before the test (safe: the server is ours)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures know whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    """Factory: `stack(workers=1, beats=1, concurrency=2, env={...})` starts and waits ready."""
    ours = psutil.Process()
    before = {p.pid for p in ours.children(recursive=True)}
    made: list[Stack] = []

    def factory(
        workers: int = 1,
        beats: int = 1,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        queues: str = "celery",
        beat_log_level: str = "info",
    ) -> Stack:
        log_dir = tmp_path / f"stack{len(made) + 1}"
        log_dir.mkdir()
        made.append(s := Stack(redis_url, e2e_env(redis_url, env), log_dir))
        s.start(
            workers=workers,
            beats=beats,
            concurrency=concurrency,
            queues=queues,
            beat_log_level=beat_log_level,
        )
        return s

    yield factory

    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    errors = []
    for s in made:
        try:
            s.kill()
        except AssertionError as exc:
            errors.append(str(exc))
        if failed or errors:
            print(f"\n===== logs of {s.log_dir} =====\n{s.tails()}")
    alive = [
        p.pid
        for p in ours.children(recursive=True)
        if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not errors, errors
    assert not alive, f"child processes of the test survived teardown: {alive}"


@pytest.fixture
async def dispatcher(redis_url: str) -> AsyncIterator[TaskDispatcher]:
    """The public Python API, configured like the stack's processes."""
    async with TaskDispatcher(settings_of(e2e_env(redis_url))) as d:
        yield d


@pytest.fixture
def proxy(redis_url: str, redis_server: EmbeddedRedis) -> Iterator[FlakyProxy]:
    """A flaky TCP proxy in front of the (emptied) session Redis."""
    with FlakyProxy(redis_server.port) as p:
        yield p
