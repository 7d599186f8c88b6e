"""Shared pytest fixtures.

Redis: the test session ALWAYS starts its own private ``redis-server`` on a free 127.0.0.1 port
and never reuses one found on the machine.  A developer's Redis (localhost:6379 or whatever
TASKDISPATCH_REDIS_URL points at) may hold real data and live Celery queues, and tests flush the
database before every test; doing that to a server we did not start would destroy someone's
work.  The private server's URL is exported as TASKDISPATCH_REDIS_URL for the whole session so
code under test, and any subprocess it spawns, talks to it rather than to the developer's Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis


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
