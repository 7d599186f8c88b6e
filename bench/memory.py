"""5. Redis memory per stored task: INFO used_memory delta over N tasks, no history, with
Redis's default configuration (`hash-max-listpack-value 64`).

The tasks are written as the store writes them (hash, account binding, every index, the
event-stream entry, capped). Also measured, for what bounds it: the task hash's encoding
and size (`OBJECT ENCODING`, `MEMORY USAGE`), the account binding, and each index's share
(`MEMORY USAGE` of the whole sorted set over its members), and RedBeat's entries.

Then N tasks created through the API (in-process, straight through ASGI), the design
document's create body with one account each: what a task costs with everything the API
writes for it, its audit entry included (`api_created`, one run: the same requests write
the same bytes).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from api.main import create_app
from bench import apps
from bench.config import Profile
from bench.load import load_redbeat, load_tasks, task_id_of
from bench.redisstats import connect, flush
from bench.stats import Stat
from taskdispatch.settings import Settings
from taskdispatch.store.keys import Keys

__all__ = ["run"]

REDIS_DEFAULT_LISTPACK_VALUE = 64
# The design document's create body (section 3.3.1), one account per task; its end date,
# now past, moved to a future date written alike.
DESIGN_BODY: dict[str, Any] = {
    "sys_type": "mac_intel",
    "task_type": "xhs_type",
    "user_query": "开始运营",
    "user_topic": "科技",
    "user_style": "专业",
    "user_target_audience": "技术爱好者",
    "task_end_time": "2099-02-08",
    "interval": 3600,
    "valid_time_range": [8, 22],
}


def _per_item(client: redis.Redis, load: Callable[[], None], n: int) -> float:
    flush(client)
    time.sleep(0.2)  # let lazy frees settle
    before = int(client.info("memory")["used_memory"])
    load()
    after = int(client.info("memory")["used_memory"])
    return (after - before) / n


def _indexes(client: redis.Redis, keys: Keys, n: int) -> list[dict[str, Any]]:
    """Each sorted set the tasks are in: its members and its bytes per stored task."""
    out = []
    for raw in client.scan_iter(match=f"{keys.prefix}*", count=1000, _type="zset"):
        key = raw.decode()
        members = int(client.zcard(key))
        size = int(client.memory_usage(key, samples=0) or 0)
        out.append({"key": key, "members": members, "bytes_per_task": size / n})
    return sorted(out, key=lambda x: x["key"])


async def _create(app: Any, n: int) -> None:
    """n POST /api/v1/tasks/ straight through ASGI, accounts account_0..account_<n-1>."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/tasks/",
        "raw_path": b"/api/v1/tasks/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    for i in range(n):
        body = {**DESIGN_BODY, "xhs_account_id": f"account_{i}", "xhs_account_name": f"账号{i}"}
        request = {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        statuses: list[int] = []

        async def receive(request: dict[str, Any] = request) -> dict[str, Any]:
            return request

        async def send(message: dict[str, Any], statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"create {i}: answered {statuses}, expected 200")


async def _created_through_api(url: str, keys: Keys, n: int) -> dict[str, Any]:
    client = connect(url)
    flush(client)
    app = create_app(Settings(redis_url=url, key_prefix=keys.prefix))
    async with app.router.lifespan_context(app):
        time.sleep(0.2)  # let lazy frees settle
        before = int(client.info("memory")["used_memory"])
        await _create(app, n)
        after = int(client.info("memory")["used_memory"])
    first = client.get(keys.account("account_0"))
    assert isinstance(first, bytes), first
    sample = keys.task(first.decode())
    return {
        "n": n,
        "bytes_per_task": (after - before) / n,
        "hash_bytes": client.memory_usage(sample),
        "hash_encoding": client.object("encoding", sample).decode(),
        "audit_bytes_per_task": (client.memory_usage(keys.audit()) or 0) / n,
        "audit_keys": sum(1 for _ in client.scan_iter(match=f"{keys.audit()}*", count=1000)),
        "events_bytes_per_task": (client.memory_usage(keys.events()) or 0) / n,
    }


def run(url: str, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    client = connect(url)
    keys = Keys("td:")
    n = profile.memory_n
    now_ms = time.time_ns() // 1_000_000

    def load() -> None:
        load_tasks(url, keys, 0, n, now_ms=now_ms)

    log(f"memory: {n:,} tasks")
    sample = keys.task(task_id_of(0))
    old = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    out: dict[str, Any] = {"n": n, "listpack_value_limit": REDIS_DEFAULT_LISTPACK_VALUE}
    try:
        client.config_set("hash-max-listpack-value", REDIS_DEFAULT_LISTPACK_VALUE)
        per_task = [_per_item(client, load, n) for _ in range(profile.memory_repeats)]
        out.update(
            {
                "bytes_per_task": Stat.of(per_task).to_json(),
                "hash_encoding": client.object("encoding", sample).decode(),
                "hash_bytes": client.memory_usage(sample),
                "hash_fields": client.hlen(sample),
                "longest_value": max(len(v) for v in client.hvals(sample)),
                "account_key_bytes": client.memory_usage(keys.account("bench-account-0000000")),
                "events_bytes_per_task": (client.memory_usage(keys.events()) or 0) / n,
                "indexes": _indexes(client, keys, n),
            }
        )
    finally:
        client.config_set("hash-max-listpack-value", old)
    if apps.have_redbeat():
        app = apps.celery_app(url)
        log(f"memory: {n:,} RedBeat entries")
        out["redbeat_bytes_per_entry"] = Stat.of(
            [
                _per_item(client, lambda: load_redbeat(url, app, 0, n, now_s=time.time()), n)
                for _ in range(profile.memory_repeats)
            ]
        ).to_json()
    log(f"memory: {n:,} tasks created through the API")
    out["api_created"] = asyncio.run(_created_through_api(url, keys, n))
    flush(client)
    return out
