"""Fixtures of the fault tests: a private Redis with append-only persistence for restart
tests, and a Sentinel-managed master with its replica for failover tests. The process
fixtures (`stack`, `dispatcher`) and the TCP proxy that cuts connections (`proxy`) come from
the root conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from tests.support.sentinel import SentinelSet


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
def sentinel_set(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, one replica and three Sentinels (down after 1 s); their logs on failure."""
    with SentinelSet(tmp_path / "sentinel-set") as servers:
        yield servers
        failed = getattr(getattr(request.node, "rep_call", None), "failed", True)
        if failed:
            print(f"\n===== Redis and Sentinel logs =====\n{servers.tails()}")
