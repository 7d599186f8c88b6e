"""Fixtures of the security tests: password-protected Redis servers, and the e2e fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskdispatch.dev.embedded_redis import EmbeddedRedis
from tests.e2e.conftest import pytest_runtest_makereport  # noqa: F401  (logs on failure)

PASSWORD = "s3cretpw"


@pytest.fixture
def password_redis() -> Iterator[EmbeddedRedis]:
    """A private Redis that demands PASSWORD (`--requirepass`); its url carries it."""
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server
