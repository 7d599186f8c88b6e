"""Startup checks against real Redis servers: reachability, eviction policy, persistence,
and through real Sentinels: the Sentinels' reachability, the master's name, its policy."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.domain.exceptions import StoreUnavailableError
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.checks import (
    EvictionPolicyError,
    beat_alive,
    main,
    run_startup_checks,
    worker_consuming,
)
from taskdispatch.store.keys import Keys
from tests.support.sentinel import MASTER_NAME, SentinelSet


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


MASTER_PASSWORD = "m4ster-pw"
SENTINEL_PASSWORD = "s3ntinel-pw"


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, one replica and three Sentinels, shared by the module (tests restore
    whatever they change)."""
    with SentinelSet(tmp_path_factory.mktemp("sentinel-set")) as servers:
        yield servers


@pytest.fixture(scope="module")
def guarded_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """The same with a password on the data nodes and another on the Sentinels."""
    directory = tmp_path_factory.mktemp("guarded-sentinel-set")
    with SentinelSet(
        directory, password=MASTER_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    ) as servers:
        yield servers


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def _closed_sentinel() -> str:
    return f"sentinel://127.0.0.1:{free_port()}"


def test_checks_sentinel_set_reachable_passes_silently(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Every Sentinel answers and names a persistent, noeviction master: no warning."""
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=sentinels.url), process="worker")
    assert _logged(caplog, logging.WARNING) == []
    assert _logged(caplog, logging.ERROR) == []


def test_checks_one_sentinel_down_warns_and_passes(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """A Sentinel that does not answer is named in a warning; the others suffice."""
    dead = _closed_sentinel()
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=f"{sentinels.url};{dead}"), process="beat")
    (warning,) = _logged(caplog, logging.WARNING)
    assert warning.startswith("beat: Sentinel 127.0.0.1:")
    assert dead.removeprefix("sentinel://") in warning
    assert "does not answer" in warning and "quorum" in warning


def test_checks_sentinel_killed_warns_until_it_is_back(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """One Sentinel of the set stopped: a warning naming it; started again: silence."""
    sentinel, master_port = sentinels.sentinels[-1], sentinels.master().port
    sentinel.kill()
    try:
        with caplog.at_level(logging.WARNING):
            run_startup_checks(Settings(redis_url=sentinels.url), process="api")
        (warning,) = _logged(caplog, logging.WARNING)
        assert f"Sentinel 127.0.0.1:{sentinel.port} of" in warning
    finally:
        sentinel.start(
            master_port=master_port,
            quorum=len(sentinels.sentinels) // 2 + 1,
            down_after_ms=sentinels.down_after_ms,
            failover_timeout_ms=sentinels.failover_timeout_ms,
            master_password=None,
        )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_startup_checks(Settings(redis_url=sentinels.url), process="api")
    assert _logged(caplog, logging.WARNING) == []


def test_checks_no_sentinel_answers_refused_with_masked_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No Sentinel answering refuses to start (StoreUnavailableError), password masked."""
    url = f"sentinel://:{MASTER_PASSWORD}@127.0.0.1:{free_port()};{_closed_sentinel()}"
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError) as caught:
        run_startup_checks(Settings(redis_url=url), process="worker")
    assert "sentinel://:***@127.0.0.1:" in str(caught.value)
    assert len(_logged(caplog, logging.WARNING)) == 2
    assert any("none of the Sentinels" in m for m in _logged(caplog, logging.ERROR))
    assert all(MASTER_PASSWORD not in m for m in [str(caught.value), caplog.text])


def test_checks_unknown_master_name_refused_naming_the_setting(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown master name refuses to start, the error naming the setting."""
    settings = Settings(redis_url=sentinels.url, redis_sentinel_master="no-such-master")
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError):
        run_startup_checks(settings, process="worker")
    (error,) = _logged(caplog, logging.ERROR)
    assert "know no master named 'no-such-master'" in error
    assert "TASKDISPATCH_REDIS_SENTINEL_MASTER" in error


def test_checks_master_eviction_policy_refused_and_replica_not_consulted(
    sentinels: SentinelSet,
) -> None:
    """The master's eviction policy is checked (refused), not the replica's."""
    master = sentinels.master()
    (replica,) = [node for node in sentinels.nodes if node is not master]
    settings = Settings(redis_url=sentinels.url)
    for node, refused in ((replica, False), (master, True)):
        with contextlib.closing(node.client()) as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
            try:
                if refused:
                    with pytest.raises(EvictionPolicyError) as caught:
                        run_startup_checks(settings, process="beat")
                    assert caught.value.url == sentinels.url
                    assert "allkeys-lru" in str(caught.value)
                else:
                    run_startup_checks(settings, process="beat")
            finally:
                client.config_set("maxmemory-policy", "noeviction")


def test_checks_master_without_persistence_warns(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """The master's persistence is checked through the Sentinels too."""
    with contextlib.closing(sentinels.master().client()) as client:
        client.config_set("appendonly", "no")
        try:
            with caplog.at_level(logging.WARNING):
                run_startup_checks(Settings(redis_url=sentinels.url), process="worker")
        finally:
            client.config_set("appendonly", "yes")
    assert any("persists nothing" in m for m in _logged(caplog, logging.WARNING))


def test_checks_fewer_replicas_than_min_replicas_warns(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """MIN_REPLICAS above the replicas connected: a warning that API writes answer 503."""
    settings = Settings(redis_url=sentinels.url, redis_min_replicas=2)
    with caplog.at_level(logging.WARNING):
        run_startup_checks(settings, process="api")
    (warning,) = _logged(caplog, logging.WARNING)
    assert "1 connected replica(s)" in warning and "MIN_REPLICAS is 2" in warning


def test_checks_sentinel_and_master_passwords_pass_and_a_wrong_one_is_refused(
    guarded_sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Both passwords right pass; a wrong Sentinel password refuses, no password shown."""
    url = guarded_sentinels.url
    assert f":{MASTER_PASSWORD}@" in url
    with caplog.at_level(logging.WARNING):
        run_startup_checks(
            Settings(redis_url=url, redis_sentinel_password=SENTINEL_PASSWORD), process="api"
        )
    assert _logged(caplog, logging.WARNING) == []
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError) as caught:
        run_startup_checks(
            Settings(redis_url=url, redis_sentinel_password="wrong-pw"), process="api"
        )
    assert len(_logged(caplog, logging.WARNING)) == len(guarded_sentinels.sentinels)
    shown = [str(caught.value), caplog.text]
    assert all(p not in m for p in (MASTER_PASSWORD, SENTINEL_PASSWORD, "wrong-pw") for m in shown)


def test_checks_main_sentinel_url_exit_codes(
    sentinels: SentinelSet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`taskdispatch check` with a Sentinel URL: 0 on the set, 1 for an unknown master."""
    monkeypatch.setenv("TASKDISPATCH_REDIS_URL", sentinels.url)
    monkeypatch.setenv("TASKDISPATCH_REDIS_SENTINEL_MASTER", MASTER_NAME)
    get_settings.cache_clear()
    try:
        assert main([]) == 0
        assert "passed the startup checks" in capsys.readouterr().out
        monkeypatch.setenv("TASKDISPATCH_REDIS_SENTINEL_MASTER", "other")
        get_settings.cache_clear()
        assert main([]) == 1
    finally:
        get_settings.cache_clear()
