"""Specification of taskdispatch.connections: URL masking for logs and messages."""

from __future__ import annotations

import pytest

from taskdispatch.connections import masked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://user:secret@localhost:6379/0", "redis://user:***@localhost:6379/0"),
        ("rediss://user:s3cr@t@redis.example:6380/1", "rediss://user:***@redis.example:6380/1"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user@localhost:6379/0", "redis://user@localhost:6379/0"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
    ],
    ids=["password", "user+password", "rediss", "no-password", "user-only", "unix-socket"],
)
def test_masked_table_hides_only_password(url: str, expected: str) -> None:
    """masked replaces the password with *** and leaves everything else as is."""
    assert masked(url) == expected
