"""Fixtures of the security tests: password-protected Redis servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from tests.support.tls import PASSWORD


@pytest.fixture
def password_redis() -> Iterator[EmbeddedRedis]:
    """A private Redis that demands PASSWORD (`--requirepass`); its url carries it."""
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server
