"""Test handlers that the e2e workers load through TASKDISPATCH_HANDLERS.

`probe_round` leaves evidence of each round in Redis (outside the `td:` prefix): a start
marker in `e2e:starts` before it sleeps and the full record in `e2e:rounds` after, so a
round killed in the middle still shows when it began; a round interrupted inside the
handler (a cancel, a lost lease) records what interrupted it in `e2e:interrupts`.

`probe_async_round` and `probe_async_file_round` are their `async def` twins: they await
instead of sleeping, record a cancelled await ("by": "CancelledError", with the cancel's
message) and what their `finally` ran. `returns_coroutine` is the mistake of a plain function
that returns a coroutine instead of awaiting it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from collections.abc import Coroutine
from typing import Any

import redis
from celery import current_task

from taskdispatch.engine.handlers import RunContext

STARTS_KEY = "e2e:starts"
ROUNDS_KEY = "e2e:rounds"
INTERRUPTS_KEY = "e2e:interrupts"
FINALLY_KEY = "e2e:finally"

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


def _node() -> str | None:
    """The node name (`w1@host`) of the Celery worker whose task runs this handler."""
    return None if current_task is None else current_task.request.hostname


def probe_round(ctx: RunContext) -> dict[str, Any]:
    """Record start (with the worker's node name), sleep `kwargs["sleep_s"]` (default 0),
    record the whole round; then fail with `kwargs["error"]` as the message, if given."""
    client = _client()
    start = {
        "task_id": ctx.task_id,
        "account_id": ctx.account_id,
        "scheduled_ms": round(ctx.scheduled_for.timestamp() * 1000),
        "round_num": ctx.round_num,
        "start_ms": _now_ms(),
        "pid": os.getpid(),
        "node": _node(),
    }
    client.rpush(STARTS_KEY, json.dumps(start))
    sleep_s = float(ctx.kwargs.get("sleep_s", 0))
    try:
        if sleep_s > 0:
            time.sleep(sleep_s)
    except BaseException as exc:
        interrupt = {**start, "by": type(exc).__name__, "at_ms": _now_ms()}
        client.rpush(INTERRUPTS_KEY, json.dumps(interrupt))
        raise
    client.rpush(ROUNDS_KEY, json.dumps({**start, "end_ms": _now_ms()}))
    if ctx.kwargs.get("error"):
        raise RuntimeError(str(ctx.kwargs["error"]))
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


async def probe_async_round(ctx: RunContext) -> dict[str, Any]:
    """`probe_round` as a coroutine: record start, await `asyncio.sleep(kwargs["sleep_s"])`,
    record the whole round; a cancelled await is recorded in `e2e:interrupts`, and the
    `finally` block records in `e2e:finally` however the round ends."""
    client = _client()
    start = {**_async_start(ctx), "start_ms": _now_ms()}
    client.rpush(STARTS_KEY, json.dumps(start))
    sleep_s = float(ctx.kwargs.get("sleep_s", 0))
    try:
        await asyncio.sleep(sleep_s)
    except asyncio.CancelledError as exc:
        interrupt = {**start, "by": type(exc).__name__, "message": _message(exc)}
        client.rpush(INTERRUPTS_KEY, json.dumps({**interrupt, "at_ms": _now_ms()}))
        raise
    finally:
        client.rpush(FINALLY_KEY, json.dumps({**start, "at_ms": _now_ms()}))
    client.rpush(ROUNDS_KEY, json.dumps({**start, "end_ms": _now_ms()}))
    return {"slept_s": sleep_s, "pid": start["pid"], "rounds_on_loop": start["rounds_on_loop"]}


async def probe_async_file_round(ctx: RunContext) -> dict[str, Any]:
    """`probe_file_round` as a coroutine: events "start", "cancelled" (a cancelled await,
    with the cancel's message) and "end", written by its `finally` however it ends."""
    path = os.path.join(os.environ["E2E_PROBE_DIR"], f"{os.getpid()}.jsonl")
    start = {**_async_start(ctx), "start_ms": _now_ms()}

    def write(event: str, **extra: Any) -> None:
        with open(path, "a") as out:
            out.write(json.dumps({"event": event, **start, **extra}) + "\n")

    write("start")
    try:
        await asyncio.sleep(float(ctx.kwargs.get("sleep_s", 0)))
    except asyncio.CancelledError as exc:
        write("cancelled", message=_message(exc), at_ms=_now_ms())
        raise
    finally:
        write("end", end_ms=_now_ms())
    return {"pid": start["pid"]}


def returns_coroutine(ctx: RunContext) -> Coroutine[Any, Any, None]:
    """A plain function that returns a coroutine instead of awaiting it."""
    return asyncio.sleep(0)


# Rounds run so far on each event loop: one loop kept for the process counts on, a loop made
# per round would always say 1 (unlike an id(), which a new loop may reuse).
_rounds_on_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
    weakref.WeakKeyDictionary()
)


def _async_start(ctx: RunContext) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _rounds_on_loop[loop] = _rounds_on_loop.get(loop, 0) + 1
    return {
        "task_id": ctx.task_id,
        "account_id": ctx.account_id,
        "scheduled_ms": round(ctx.scheduled_for.timestamp() * 1000),
        "round_num": ctx.round_num,
        "fencing_token": ctx.fencing_token,
        "pid": os.getpid(),
        "rounds_on_loop": _rounds_on_loop[loop],
    }


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else ""


# How often `progress_round` reports: far more often than progress is written (once a second).
PROGRESS_PER_S = 10


def progress_round(ctx: RunContext) -> dict[str, Any]:
    """Report `step <n> of <steps>` with the fraction done `PROGRESS_PER_S` times a second for
    `kwargs["duration_s"]` seconds (default 3)."""
    duration_s = float(ctx.kwargs.get("duration_s", 3))
    steps = max(1, round(duration_s * PROGRESS_PER_S))
    for n in range(1, steps + 1):
        ctx.progress(f"step {n} of {steps}", fraction=n / steps)
        time.sleep(1 / PROGRESS_PER_S)
    return {"steps": steps}
