"""TASKDISPATCH_RATE_LIMIT: a token bucket per client in Redis, 429 with Retry-After."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI

from api.main import create_app
from taskdispatch.settings import RateLimit, Settings, parse_rate_limit
from taskdispatch.store.keys import Keys
from taskdispatch.store.scripts import RATELIMIT_TAKE
from tests.support.api import ApiProcess, error_body_ok, serve
from tests.support.stack import e2e_env

KEYS = Keys("tdtest:")


@pytest.fixture
async def limited(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API allowing 5 requests a minute per client."""
    app: FastAPI = create_app(
        Settings(redis_url=redis_url, key_prefix="tdtest:", rate_limit="5/minute")
    )
    async with serve(app) as client:
        yield client


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("600/minute", RateLimit(600, 60)),
        ("10/second", RateLimit(10, 1)),
        (" 3 / hour ", RateLimit(3, 3600)),
    ],
)
def test_parse_rate_limit_reads_count_per_period(text: str, limit: RateLimit) -> None:
    """<count>/<second|minute|hour>."""
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize("text", ["600", "0/minute", "10/day", "-1/second", "ten/minute"])
def test_rate_limit_setting_malformed_is_refused_naming_the_form(text: str) -> None:
    """A bad setting stops the process at startup with the accepted form."""
    with pytest.raises(ValueError, match=re.escape("<count>/<second|minute|hour>")):
        Settings(redis_url="redis://127.0.0.1:1/0", rate_limit=text)


def test_bucket_allows_the_burst_then_refuses_with_the_wait(redis_url: str) -> None:
    """Capacity 3 at 10/s: three takes pass, the fourth waits ~100 ms, then one passes."""
    client = redis.Redis.from_url(redis_url)
    limit = RateLimit(3, 1)
    args = [3, 3 / 1000]
    answers = [RATELIMIT_TAKE(client, keys=[KEYS.rate("x")], args=args) for _ in range(4)]
    assert [int(a[0]) for a in answers] == [1, 1, 1, 0]
    assert 0 < int(answers[3][1]) <= 1000 / limit.count + 1
    # The bucket script reads Redis's TIME, so only real time refills the bucket.
    time.sleep(int(answers[3][1]) / 1000 + 0.05)
    assert int(RATELIMIT_TAKE(client, keys=[KEYS.rate("x")], args=args)[0]) == 1
    assert 0 < client.pttl(KEYS.rate("x")) <= 2000
    client.close()


async def test_requests_over_the_limit_get_429_with_retry_after(
    limited: httpx.AsyncClient,
) -> None:
    """The sixth request in a minute: 429, the standard error body and Retry-After."""
    statuses = [(await limited.get("/api/v1/tasks/")).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = await limited.get("/api/v1/tasks/")
    assert refused.status_code == 429
    assert error_body_ok(refused.json())
    assert refused.json()["error"].startswith("请求过于频繁：每分钟最多 5 次")
    assert 1 <= int(refused.headers["Retry-After"]) <= 12


async def test_health_and_readiness_are_never_limited(limited: httpx.AsyncClient) -> None:
    """An orchestrator's probes pass whatever the client sent before."""
    for _ in range(6):
        await limited.get("/api/v1/tasks/")
    for _ in range(10):
        assert (await limited.get("/api/v1/health")).status_code == 200
        assert (await limited.get("/api/v1/health/ready")).status_code == 200


async def test_each_token_has_its_own_bucket(redis_url: str) -> None:
    """One token's burst does not use another's requests."""
    tokens = {n: {"token": f"{n}-token-0123456789", "role": "viewer"} for n in ("a", "b")}
    app = create_app(
        Settings(
            redis_url=redis_url,
            key_prefix="tdtest:",
            rate_limit="3/minute",
            api_tokens=json.dumps(tokens),
        )
    )
    async with serve(app) as client:
        for name in ("a", "b"):
            headers = {"Authorization": f"Bearer {name}-token-0123456789"}
            codes = [
                (await client.get("/api/v1/me", headers=headers)).status_code for _ in range(4)
            ]
            assert codes == [200, 200, 200, 429], name


def test_limit_holds_across_two_api_processes_sharing_redis(redis_url: str, tmp_path: Path) -> None:
    """20 an hour across two API processes: a burst of 40 sent to both alternately lets
    exactly 20 through, whichever process answered."""
    env = {
        **e2e_env(redis_url),
        "TASKDISPATCH_KEY_PREFIX": "tdrate:",
        "TASKDISPATCH_RATE_LIMIT": "20/hour",
    }
    with (
        ApiProcess(env, tmp_path / "api1.log") as one,
        ApiProcess(env, tmp_path / "api2.log") as two,
    ):
        codes = Counter(
            httpx.get(f"{api.base_url}/api/v1/tasks/", timeout=5).status_code
            for _ in range(20)
            for api in (one, two)
        )
    assert codes == Counter({200: 20, 429: 20})
