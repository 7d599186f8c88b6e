"""5. Redis memory per stored task: INFO used_memory delta over N tasks, no history, with
Redis's default configuration (`hash-max-listpack-value 64`).

The tasks are written as the store writes them (hash, account binding, every index, the
event-stream entry, capped). Also measured, for what bounds it: the task hash's encoding
and size (`OBJECT ENCODING`, `MEMORY USAGE`), the account binding, and each index's share
(`MEMORY USAGE` of the whole sorted set over its members), and RedBeat's entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from bench import apps
from bench.config import Profile
from bench.load import load_redbeat, load_tasks, task_id_of
from bench.redisstats import connect, flush
from bench.stats import Stat
from taskdispatch.keys import Keys

__all__ = ["run"]

REDIS_DEFAULT_LISTPACK_VALUE = 64


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
    flush(client)
    return out
