"""Test handlers that the e2e workers load through TASKDISPATCH_HANDLERS.

`probe_round` leaves evidence of each round in Redis (outside the `td:` prefix): a start
marker in `e2e:starts` before it sleeps and the full record in `e2e:rounds` after, so a
round killed in the middle still shows when it began.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from taskdispatch.handlers import RunContext

STARTS_KEY = "e2e:starts"
ROUNDS_KEY = "e2e:rounds"

_clients: dict[int, redis.Redis] = {}


def _client() -> redis.Redis:
    """One client per process: pool children are forked, so never share a parent's socket."""
    pid = os.getpid()
    if pid not in _clients:
        url = os.environ["TASKDISPATCH_REDIS_URL"]
        _clients[pid] = redis.Redis.from_url(url, decode_responses=True)
    return _clients[pid]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def probe_round(ctx: RunContext) -> dict[str, Any]:
    """Record start, sleep `kwargs["sleep_s"]` (default 0), record the whole round."""
    client = _client()
    start = {
        "task_id": ctx.task_id,
        "account_id": ctx.account_id,
        "scheduled_ms": round(ctx.scheduled_for.timestamp() * 1000),
        "round_num": ctx.round_num,
        "start_ms": _now_ms(),
        "pid": os.getpid(),
    }
    client.rpush(STARTS_KEY, json.dumps(start))
    sleep_s = float(ctx.kwargs.get("sleep_s", 0))
    if sleep_s > 0:
        time.sleep(sleep_s)
    client.rpush(ROUNDS_KEY, json.dumps({**start, "end_ms": _now_ms()}))
    return {"slept_s": sleep_s, "pid": start["pid"]}


def probe_file_round(ctx: RunContext) -> dict[str, Any]:
    """Like `probe_round`, but the records go to files under `$E2E_PROBE_DIR` (one per
    process), so that a worker cut off from Redis still leaves them; the end is written
    however the round ends, an interrupt included."""
    path = os.path.join(os.environ["E2E_PROBE_DIR"], f"{os.getpid()}.jsonl")
    start = {
        "task_id": ctx.task_id,
        "account_id": ctx.account_id,
        "scheduled_ms": round(ctx.scheduled_for.timestamp() * 1000),
        "fencing_token": ctx.fencing_token,
        "start_ms": _now_ms(),
        "pid": os.getpid(),
    }
    with open(path, "a") as out:
        out.write(json.dumps({"event": "start", **start}) + "\n")
    try:
        time.sleep(float(ctx.kwargs.get("sleep_s", 0)))
    finally:
        with open(path, "a") as out:
            out.write(json.dumps({"event": "end", **start, "end_ms": _now_ms()}) + "\n")
    return {"pid": start["pid"]}
