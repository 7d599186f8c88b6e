"""Fixtures of the fault tests: a private Redis with append-only persistence for restart
tests. The process fixtures (`stack`, `dispatcher`) and the TCP proxy that cuts
connections (`proxy`) come from the root conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskdispatch.dev.embedded_redis import EmbeddedRedis


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private Redis with appendonly=yes, restartable on the same port and data dir."""
    server = EmbeddedRedis(data_dir=tmp_path / "redis-aof", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.close()
