"""A store written by the release before the audit was stored once, for the upgrade test.

`python -m tests.support.make_upgrade_fixture` regenerates `tests/fixtures/
store-before-audit-once.json`: it exports revision `BEFORE` (the last commit whose audit
trail kept a second full copy of each entry in the task's own list) with `git archive`,
runs `scenario` below with THAT revision's code (a copy of this file run inside the
export, in a private redis-server), and writes every key the scenario left: its type, its
value and its TTL. `load` puts such a dump back into an empty Redis.

The scenario uses the service and the round runner as the processes do, with a clock
pinned to 2026-01-08 09:00 (Asia/Shanghai) so the design document's example body (its
end date 2026-02-08 included) is accepted: tasks created with the document's run
parameters, patched, paused and resumed, reordered, run now, rounds recorded (ok and
failed), a limit, a bulk pause, a deleted task, and the dispatcher left stopped.

Only this file's standard-library and redis-py imports are at module level: `scenario`
imports taskdispatch inside, so that it runs on whichever revision it is copied into.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import redis

__all__ = ["BEFORE", "FIXTURE", "PREFIX", "dump", "load", "main", "read_fixture", "scenario"]

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "store-before-audit-once.json"
# The last commit that stored each audit entry twice (the trail and the task's own list).
BEFORE = "0ae3f75c9241cc547a34d4409505db5953e45133"
PREFIX = "tdtest:"
COMMAND = "python -m tests.support.make_upgrade_fixture"

# The design document's create body (section 3.3.1).
DESIGN_BODY: dict[str, Any] = {
    "sys_type": "mac_intel",
    "task_type": "xhs_type",
    "xhs_account_id": "account_1",
    "xhs_account_name": "账号1",
    "user_query": "开始运营",
    "user_topic": "科技",
    "user_style": "专业",
    "user_target_audience": "技术爱好者",
    "task_end_time": "2026-02-08",
    "interval": 3600,
    "valid_time_range": [8, 22],
}
# 2026-01-08 09:00 in Asia/Shanghai: inside the body's window, before its end date.
START_MS = 1_767_834_000_000
HOUR_MS = 3_600_000


def dump(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under `prefix`: {key: {"type", "value", "ttl_ms"?}}, keys sorted. Streams
    keep their entry ids (the audit's cursors); sorted sets their scores."""
    out: dict[str, Any] = {}
    for raw in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        key = raw if isinstance(raw, str) else raw.decode()
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = [
                [member, score] for member, score in client.zrange(key, 0, -1, withscores=True)
            ]
        elif kind == "stream":
            value = [[entry_id, fields] for entry_id, fields in client.xrange(key)]
        else:
            raise ValueError(f"{key}: type {kind} is not dumped")
        item: dict[str, Any] = {"type": kind, "value": value}
        ttl_ms = client.pttl(key)
        if ttl_ms > 0:
            item["ttl_ms"] = ttl_ms
        out[key] = item
    return out


def load(client: redis.Redis, keys: dict[str, Any]) -> None:
    """Write the keys of a `dump` into `client`'s Redis (their keys must not exist)."""
    with client.pipeline(transaction=False) as pipe:
        for key, item in keys.items():
            kind, value = item["type"], item["value"]
            if kind == "string":
                pipe.set(key, value)
            elif kind == "hash":
                pipe.hset(key, mapping=value)
            elif kind == "list":
                pipe.rpush(key, *value)
            elif kind == "set":
                pipe.sadd(key, *value)
            elif kind == "zset":
                pipe.zadd(key, {member: score for member, score in value})
            elif kind == "stream":
                for entry_id, fields in value:
                    pipe.xadd(key, fields, id=entry_id)
            if "ttl_ms" in item:
                pipe.pexpire(key, item["ttl_ms"])
        pipe.execute()


def read_fixture(path: Path = FIXTURE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


async def scenario(url: str, prefix: str) -> None:
    """What an operator and the workers did to the store (see the module docstring)."""
    import socket

    from taskdispatch.domain.models import Task
    from taskdispatch.engine.handlers import HandlerRegistry, RunContext
    from taskdispatch.engine.rounds import RoundMessage, RoundRunner
    from taskdispatch.service.dispatcher import TaskDispatcher
    from taskdispatch.settings import Settings
    from taskdispatch.store.keys import Keys

    now = [START_MS]

    def clock() -> int:
        return now[0]

    settings = Settings(redis_url=url, key_prefix=prefix)
    keys = Keys(prefix)
    sync = redis.Redis.from_url(url, decode_responses=True)

    def fail(ctx: RunContext) -> None:
        raise RuntimeError("页面加载超时")

    registry = HandlerRegistry({"xhs_type": lambda ctx: {"round": ctx.round_num}})
    failing = HandlerRegistry({"xhs_type": fail})
    host = socket.gethostname()
    runner = RoundRunner(sync, settings, registry, hostname=host, clock=clock)
    failing_runner = RoundRunner(sync, settings, failing, hostname=host, clock=clock)

    def run_round(task_id: str, *, ok: bool = True) -> None:
        task = Task.from_hash(sync.hgetall(keys.task(task_id)), task_id=task_id)
        assert task.next_ms is not None
        now[0] = max(now[0], task.next_ms)
        message = RoundMessage(task_id=task_id, fence=task.fence, slot_ms=task.next_ms)
        summary = (runner if ok else failing_runner).run(message)
        assert summary["outcome"] == ("ok" if ok else "failed"), summary

    async with TaskDispatcher(settings, clock=clock, task_types={"xhs_type"}) as service:
        alice, ops = service.acting_as("alice"), service.acting_as("ops-bot")
        ids = []
        for n in range(1, 6):
            body = {**DESIGN_BODY, "xhs_account_id": f"account_{n}", "xhs_account_name": f"账号{n}"}
            if n == 5:
                body.update(tags=["team:a", "device:mac-01"], valid_time_range=[0, 24])
            ids.append((await alice.create_task(**body)).task_id)
        now[0] += 60_000
        await alice.update_task(ids[0], interval=7200, user_topic="财经")
        await ops.pause_task(ids[1], note="账号申诉中")
        await ops.resume_task(ids[1])
        await ops.pause_task(ids[2], until="2026-01-09T10:00:00", note="维护")
        await ops.reorder_task(ids[3], 60)
        await ops.run_now(ids[4])
        await alice.put_limit("l1", max_concurrent=2, match={"tag": "team:a"})
        for task_id in (ids[4], ids[0], ids[4]):
            run_round(task_id)
        run_round(ids[3], ok=False)
        now[0] += HOUR_MS
        await ops.bulk(
            "pause", task_ids=[ids[0], ids[3]], note="批量暂停", request_id="upgrade-bulk-1"
        )
        gone = await alice.create_task(
            **{**DESIGN_BODY, "xhs_account_id": "account_gone", "xhs_account_name": "已删除"}
        )
        await alice.delete_task(gone.task_id)
        await alice.stop()
    sync.close()


def _write(out: Path, rev: str) -> None:
    """Run `scenario` with the code this process imports, in a private Redis; dump it."""
    import taskdispatch
    from taskdispatch.dev.embedded_redis import EmbeddedRedis

    # The export's code, not an installed copy of the working tree's.
    assert Path(taskdispatch.__file__).is_relative_to(Path.cwd()), taskdispatch.__file__
    with EmbeddedRedis(appendonly=False) as server:
        asyncio.run(scenario(server.url, PREFIX))
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            keys = dump(client, PREFIX)
        finally:
            client.close()
    data = {"revision": rev, "command": COMMAND, "prefix": PREFIX, "keys": keys}
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _export(rev: str, into: Path) -> None:
    archive = into / "tree.tar"
    with archive.open("wb") as sink:
        subprocess.run(["git", "archive", rev], cwd=ROOT, stdout=sink, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--rev", default=BEFORE, help="the revision whose code writes the store")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    # Internal: run by the copy of this file inside the export.
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.here:
        _write(args.out, args.rev)
        return
    with tempfile.TemporaryDirectory(prefix="td-upgrade-fixture-") as work:
        _export(args.rev, Path(work))
        tree = Path(work) / "tree"
        shutil.copy(Path(__file__), tree / "_make_upgrade_fixture.py")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKDISPATCH_")}
        env.pop("PYTHONPATH", None)
        command = [sys.executable, "-m", "_make_upgrade_fixture", "--here", "--rev", args.rev]
        command += ["--out", str(args.out.resolve())]
        subprocess.run(command, cwd=tree, env=env, check=True)
    print(f"wrote {args.out} from {args.rev}")


if __name__ == "__main__":
    main()
