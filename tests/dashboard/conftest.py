"""Fixtures of the dashboard tests: a private Redis client, the API process, a browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.dashboard import ADMIN_TOKEN, Api, chromium


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def api(redis_url: str) -> Iterator[Api]:
    """Without tokens: every request is the anonymous admin (the API listens on loopback)."""
    server = Api(redis_url)
    yield server
    server.close()


@pytest.fixture
def secured_api(redis_url: str) -> Iterator[Api]:
    server = Api(redis_url, token=ADMIN_TOKEN)
    yield server
    server.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path / "chromium-profile")
    yield driver
    driver.quit()
