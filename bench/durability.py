"""8. What TASKDISPATCH_REDIS_MIN_REPLICAS costs: API writes that wait for a replica.

The bench Redis gets a replica for this measurement (a second redis-server started here,
REPLICAOF the bench Redis). Two uvicorn processes on the same store, one with
`MIN_REPLICAS=0` and one with `MIN_REPLICAS=1`, take `POST /api/v1/tasks/` (a new account
each) and `PATCH /api/v1/tasks/{id}` (a new `user_query` each, on 200 stored tasks cycled)
in interleaved runs; the ratios are taken within each round. The raw cost of the `WAIT`
itself is timed too: one connection, `HSET` alone against `HSET` + `WAIT 1`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from bench.api import api_server, load_once
from bench.config import Profile
from bench.load import load_tasks, task_id_of
from bench.probe import ProbeError
from bench.procs import Child, wait_until
from bench.redisstats import connect, flush
from bench.stats import Stat
from taskdispatch.dev.embedded_redis import EmbeddedRedis, free_port
from taskdispatch.store.keys import Keys

__all__ = ["run"]

WAIT_TIMEOUT_MS = 1000
PATCH_IDS = 200
RAW_WRITES = 2000
ENDPOINTS = {
    "POST /tasks/": {
        "method": "POST",
        "paths": ["/api/v1/tasks/"],
        "body": (
            '{"sys_type":"mac_intel","task_type":"noop","xhs_account_id":"wait-{n}",'
            '"xhs_account_name":"wait {n}","interval":3600,"valid_time_range":[0,24]}'
        ),
    },
    "PATCH /tasks/{id}": {
        "method": "PATCH",
        "paths": [f"/api/v1/tasks/{task_id_of(i)}" for i in range(PATCH_IDS)],
        "body": '{"user_query":"query {n}"}',
    },
}


def _online(master: redis.Redis) -> bool:
    """The master counts its replica (as WAIT does): it acknowledged at least once."""
    entry = master.info("replication").get("slave0")
    return isinstance(entry, dict) and entry.get("state") == "online"


def _raw_wait_us(master: redis.Redis) -> dict[str, Any]:
    """Microseconds per write on one connection, alone and followed by WAIT 1."""
    out = {}
    for name, wait in (("write", False), ("write + WAIT 1", True)):
        t0 = time.perf_counter()
        for i in range(RAW_WRITES):
            master.hset("bench:wait", "n", i)
            if wait and int(master.execute_command("WAIT", 1, WAIT_TIMEOUT_MS)) < 1:
                raise ProbeError("the replica did not acknowledge a write")
        out[name] = 1e6 * (time.perf_counter() - t0) / RAW_WRITES
    master.delete("bench:wait")
    return out


def _servers(url: str, work: Path) -> dict[int, tuple[Child, str]]:
    servers = {}
    for replicas in (0, 1):
        port = free_port()
        env = {
            "TASKDISPATCH_REDIS_MIN_REPLICAS": str(replicas),
            "TASKDISPATCH_REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
        }
        servers[replicas] = (api_server(url, port, work, **env), f"http://127.0.0.1:{port}")
    return servers


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run(url: str, profile: Profile, workdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    master = connect(url)
    work = Path(workdir)
    flush(master)
    load_tasks(url, Keys("td:"), 0, PATCH_IDS, now_ms=time.time_ns() // 1_000_000)
    with EmbeddedRedis() as replica_server:
        replica = connect(replica_server.url)
        replica.replicaof("127.0.0.1", urlsplit(url).port)
        if not wait_until(lambda: _online(master), 30, 0.05):
            raise ProbeError("the replica did not come online")
        raw = _raw_wait_us(master)
        servers = _servers(url, work)
        try:
            for child, base_url in servers.values():
                if not wait_until(lambda base_url=base_url: _answers(base_url), 30):
                    raise ProbeError(f"the API did not start:\n{child.log_tail()}")
            endpoints: dict[str, Any] = {}
            for name, spec in ENDPOINTS.items():
                log(f"durability: {name}, MIN_REPLICAS 0 and 1 interleaved")
                for _, base_url in servers.values():
                    load_once(base_url, spec, profile, work, 1.0)  # warm-up
                runs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
                for _ in range(profile.api_repeats):
                    for replicas, (_, base_url) in servers.items():
                        result = load_once(base_url, spec, profile, work, profile.api_duration_s)
                        if result["errors"]:
                            raise ProbeError(f"{name}: {result['errors']} failed requests")
                        runs[replicas].append(result)
                endpoints[name] = {
                    f"min_replicas_{m}": {
                        "rps": Stat.of([r["rps"] for r in rs]).to_json(),
                        "p50_ms": Stat.of([r["p50_ms"] for r in rs]).to_json(),
                        "p99_ms": Stat.of([r["p99_ms"] for r in rs]).to_json(),
                    }
                    for m, rs in runs.items()
                }
                endpoints[name]["rps_ratio"] = Stat.of(
                    [a["rps"] / b["rps"] for a, b in zip(runs[1], runs[0], strict=True)]
                ).to_json()
        finally:
            for child, _ in servers.values():
                child.stop()
            replica.replicaof("NO", "ONE")
            replica.close()
    flush(master)
    return {
        "wait_timeout_ms": WAIT_TIMEOUT_MS,
        "connections": profile.api_connections,
        "raw_us": raw,
        "endpoints": endpoints,
    }
