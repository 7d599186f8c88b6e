"""Redis passwords and TLS: supported everywhere, and never shown in a log or a response."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import httpx
import pytest
import redis

from api.main import create_app
from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from tests.support.api import ApiProcess, create_body, error_body_ok, serve
from tests.support.probes import add_probe_task, wait_until
from tests.support.runner import message_for, runner_for
from tests.support.stack import Stack, e2e_env, settings_of
from tests.support.tls import PASSWORD, TlsFront, make_cert, openssl_available

LEAKS = (PASSWORD, "Traceback", 'File "')


def test_embedded_redis_password_is_required_and_carried_by_its_url(
    password_redis: EmbeddedRedis,
) -> None:
    """`EmbeddedRedis(password=...)` runs with --requirepass; its url logs in, others do not."""
    assert f":{PASSWORD}@" in password_redis.url
    anonymous = redis.Redis(port=password_redis.port, socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    client = redis.Redis.from_url(password_redis.url)
    assert client.ping()
    client.close()


async def test_dispatcher_and_round_work_over_a_password_url(password_redis: EmbeddedRedis):
    """TaskDispatcher stores a task and a worker's RoundRunner runs it, both with the password."""
    settings = Settings(redis_url=password_redis.url, key_prefix="td:")
    async with TaskDispatcher(settings, task_types={"probe"}) as d:
        task_id = await add_probe_task(d, "acct-pw")
        runner, client = runner_for(password_redis.url, lambda ctx: "ok")
        assert runner.run(message_for(client, task_id))["outcome"] == "ok"
        assert [r.outcome for r in await d.runs(task_id)] == ["ok"]
    client.close()


@pytest.fixture
def cert_and_key(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (skips without openssl)."""
    if not openssl_available():
        pytest.skip("the openssl command is needed to make a test certificate")
    return make_cert(tmp_path)


def ping_without_the_ca_is_refused(port: int) -> None:
    """`rediss://` with ssl_cert_reqs=required but not the test CA cannot connect."""
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
    client = redis.Redis.from_url(url, socket_timeout=3)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


@pytest.fixture
def tls_redis(password_redis: EmbeddedRedis, cert_and_key: tuple[Path, Path]):
    """The password Redis behind a TLS front; yields the `rediss://` URL verifying its cert."""
    cert, key = cert_and_key
    with TlsFront(password_redis.port, cert, key) as front:
        yield (
            f"rediss://:{PASSWORD}@127.0.0.1:{front.port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={cert}"
        )


async def test_dispatcher_and_round_work_over_rediss_with_password(tls_redis: str):
    """`rediss://` with a password and a verified certificate: store, round and history work."""
    settings = Settings(redis_url=tls_redis, key_prefix="td:")
    async with TaskDispatcher(settings, task_types={"probe"}) as d:
        task_id = await add_probe_task(d, "acct-tls")
        runner, client = runner_for(tls_redis, lambda ctx: "ok")
        assert runner.run(message_for(client, task_id))["outcome"] == "ok"
        assert [r.outcome for r in await d.runs(task_id)] == ["ok"]
    client.close()


def test_rediss_refuses_a_server_certificate_it_cannot_verify(
    password_redis: EmbeddedRedis, cert_and_key: tuple[Path, Path]
) -> None:
    """ssl_cert_reqs=required without the CA: the connection fails (no silent downgrade)."""
    with TlsFront(password_redis.port, *cert_and_key) as front:
        ping_without_the_ca_is_refused(front.port)


def test_tls_front_closed_after_a_refused_handshake_leaves_nothing_to_log_later(
    password_redis: EmbeddedRedis,
    cert_and_key: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed front leaves no pending task or failed handshake for a later test's log."""
    with TlsFront(password_redis.port, *cert_and_key) as front:
        ping_without_the_ca_is_refused(front.port)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        gc.collect()
    assert caplog.text == ""


@pytest.mark.e2e
async def test_worker_and_beat_over_rediss_with_password_run_rounds_and_log_no_secret(
    tls_redis: str, tmp_path: Path
) -> None:
    """Real worker and beat on rediss://:password@: rounds run; no log line shows the password."""
    env = e2e_env(tls_redis)
    stack = Stack(tls_redis, env, tmp_path)
    try:
        stack.start(workers=1, beats=1, concurrency=1, queues="celery")
        async with TaskDispatcher(settings_of(env)) as d:
            task_id = await add_probe_task(d, "acct-tls-e2e")
            wait_until(
                lambda: len(stack.view.runs(task_id, "ok")) >= 2,
                timeout_s=30,
                message="two rounds over TLS",
            )
    finally:
        stack.stop()
    for proc in stack.procs():
        log = proc.log()
        assert PASSWORD not in log, f"{proc.name} logged the Redis password"
        assert "Traceback" not in log, proc.tail()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/tasks/", None),
        ("POST", "/api/v1/tasks/", create_body()),
        ("PATCH", "/api/v1/tasks/some-id", {"interval": 60}),
        ("POST", "/api/v1/tasks/some-id/pause", None),
        ("GET", "/api/v1/dispatcher/check", None),
        ("GET", "/api/v1/accounts/a1/tasks", None),
    ],
)
async def test_unreachable_redis_503_body_and_logs_never_contain_the_password(
    method: str, url: str, body: dict | None, caplog: pytest.LogCaptureFixture
) -> None:
    """redis://:s3cretpw@ on a closed port: 503 in the standard body; no log shows s3cretpw."""
    settings = Settings(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.DEBUG):
        async with serve(create_app(settings)) as client:
            response = await client.request(method, url, json=body)
    assert response.status_code == 503, response.text
    assert error_body_ok(response.json())
    assert ":***@" in response.json()["error"]
    for leak in LEAKS:
        assert leak not in response.text
        assert leak not in caplog.text


async def test_wrong_redis_password_is_503_without_either_password(
    password_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password answers 503 (not 500), naming neither the wrong nor the right one."""
    wrong = "wr0ngpw"
    settings = Settings(redis_url=f"redis://:{wrong}@127.0.0.1:{password_redis.port}/0")
    with caplog.at_level(logging.DEBUG):
        async with serve(create_app(settings)) as client:
            response = await client.get("/api/v1/tasks/")
    assert response.status_code == 503, response.text
    assert error_body_ok(response.json())
    for secret in (wrong, PASSWORD, "Traceback"):
        assert secret not in response.text
        assert secret not in caplog.text


def test_live_api_with_unreachable_password_redis_logs_no_secret(tmp_path: Path) -> None:
    """The uvicorn process itself (startup checks, access log, warnings) never prints it."""
    env = {
        "TASKDISPATCH_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0",
        "TASKDISPATCH_API_TOKEN": "t0ken-secret",
    }
    with ApiProcess(env, tmp_path / "api.log") as api:
        headers = {"Authorization": "Bearer t0ken-secret"}
        response = httpx.get(f"{api.base_url}/api/v1/tasks/", headers=headers, timeout=15)
        unauthorized = httpx.get(f"{api.base_url}/api/v1/tasks/", timeout=15)
    assert response.status_code == 503 and error_body_ok(response.json())
    assert unauthorized.status_code == 401
    log = api.log()
    assert "503" in log  # the access log was captured
    for secret in (PASSWORD, "t0ken-secret", "Traceback"):
        assert secret not in log
        assert secret not in response.text
