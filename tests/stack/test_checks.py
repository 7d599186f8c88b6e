"""Startup checks against real Redis servers: reachability, eviction policy, persistence."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from taskdispatch.checks import (
    EvictionPolicyError,
    beat_alive,
    main,
    run_startup_checks,
    worker_consuming,
)
from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.exceptions import StoreUnavailableError
from taskdispatch.keys import Keys
from taskdispatch.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _no_eviction_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKDISPATCH_ALLOW_EVICTION", raising=False)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the session Redis; its config is restored after the test."""
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    saved = {name: str(conn.config_get(name)[name]) for name in ("maxmemory-policy", "save")}
    yield conn
    for name, value in saved.items():
        conn.config_set(name, value)
    conn.close()


@pytest.fixture(scope="module")
def persistent_redis() -> Iterator[EmbeddedRedis]:
    """A Redis configured the way taskdispatch wants it: AOF on, noeviction."""
    with EmbeddedRedis(appendonly=True) as server:
        yield server


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_checks_persistent_noeviction_redis_passes_silently(
    persistent_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A reachable, persistent, noeviction Redis passes with no warning."""
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=persistent_redis.url), process="api")
    assert _warnings(caplog) == []


def test_checks_unreachable_redis_raises_with_masked_url() -> None:
    """A closed port raises StoreUnavailableError whose one-line message hides the password."""
    port = free_port()
    url = f"redis://admin:s3cret@127.0.0.1:{port}/0"
    with pytest.raises(StoreUnavailableError) as caught:
        run_startup_checks(Settings(redis_url=url), process="worker")
    message = str(caught.value)
    assert "s3cret" not in message
    assert f"redis://admin:***@127.0.0.1:{port}/0" in message
    assert "\n" not in message


def test_checks_allkeys_lru_policy_is_refused(client: redis.Redis, redis_url: str) -> None:
    """maxmemory-policy allkeys-lru is refused with a one-line explanation."""
    client.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(EvictionPolicyError) as caught:
        run_startup_checks(Settings(redis_url=redis_url), process="beat")
    message = str(caught.value)
    assert "allkeys-lru" in message
    assert "noeviction" in message
    assert "TASKDISPATCH_ALLOW_EVICTION=true" in message
    assert message.startswith("beat: ")
    assert "\n" not in message
    assert isinstance(caught.value, RuntimeError)


def test_checks_allkeys_lru_with_allow_eviction_only_warns(
    client: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TASKDISPATCH_ALLOW_EVICTION=true turns the refusal into a warning."""
    client.config_set("maxmemory-policy", "allkeys-lru")
    monkeypatch.setenv("TASKDISPATCH_ALLOW_EVICTION", "true")
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=redis_url), process="api")
    assert any("allkeys-lru" in message for message in _warnings(caplog))


def test_checks_no_aof_no_save_warns_about_persistence(
    client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """appendonly no and no save points log a warning, and the checks still pass."""
    client.config_set("save", "")
    assert client.config_get("appendonly")["appendonly"] == "no"
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=redis_url), process="worker")
    assert any("persists nothing" in message for message in _warnings(caplog))


def test_checks_save_points_count_as_persistence(
    client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RDB save points without AOF are persistence: no warning."""
    client.config_set("save", "3600 1")
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=redis_url), process="worker")
    assert _warnings(caplog) == []


def test_checks_config_disabled_warns_unverified(
    client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A user without CONFIG (as on managed Redis) gets a warning, not a failure."""
    client.acl_setuser(
        "limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"]
    )
    try:
        url = redis_url.replace("redis://", "redis://limited:pw@", 1)
        with caplog.at_level(logging.WARNING):
            run_startup_checks(Settings(redis_url=url), process="api")
    finally:
        client.acl_deluser("limited")
    messages = _warnings(caplog)
    assert any("could not be verified" in message for message in messages)
    assert all("pw@" not in message for message in messages)


def test_beat_alive_recent_heartbeat_of_this_host_is_true(redis_url: str) -> None:
    """A heartbeat from this host within the window counts; an old or foreign one does not."""
    conn = redis.Redis.from_url(redis_url)
    beats = Keys(Settings().key_prefix).beats()
    now_ms = time.time_ns() // 1_000_000
    host = socket.gethostname()
    settings = Settings(redis_url=redis_url)
    conn.zadd(beats, {f"{host}:1:old": now_ms - 120_000, f"other-{host}:2:new": now_ms})
    assert not beat_alive(settings, host=host, within_s=60)
    conn.zadd(beats, {f"{host}:3:new": now_ms})
    assert beat_alive(settings, host=host, within_s=60)
    conn.close()


def test_worker_consuming_recent_heartbeat_of_a_worker_on_this_host_is_true(redis_url: str) -> None:
    """Only a fresh heartbeat of a node on this host (`name@host`) counts as consuming."""
    conn = redis.Redis.from_url(redis_url)
    workers = Keys(Settings().key_prefix).workers()
    now_ms = time.time_ns() // 1_000_000
    host = socket.gethostname()
    settings = Settings(redis_url=redis_url)
    conn.zadd(workers, {f"w1@{host}": now_ms - 120_000, f"w2@{host}-other": now_ms})
    assert not worker_consuming(settings, host=host, within_s=60)
    conn.zadd(workers, {f"w3@{host}": now_ms})
    assert worker_consuming(settings, host=host, within_s=60)
    conn.close()


def test_checks_main_exit_codes_follow_the_checks(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`taskdispatch check` exits 0 on a good Redis and 1 with one line otherwise."""
    monkeypatch.setenv("TASKDISPATCH_REDIS_URL", redis_url)
    get_settings.cache_clear()
    try:
        assert main([]) == 0
        monkeypatch.setenv("TASKDISPATCH_REDIS_URL", f"redis://:pw@127.0.0.1:{free_port()}/0")
        get_settings.cache_clear()
        assert main(["--process", "healthcheck"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ":***@" in err
