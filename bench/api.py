"""4. The REST API under load: one uvicorn worker, load from a separate process.

GET /api/v1/tasks/{id}, GET /api/v1/tasks/?status=pending&limit=100 and POST /api/v1/tasks/
with 1k and 100k tasks stored, each beside the framework's floor (`bench/floor.py`: one
HGETALL into a Pydantic model, and 100 pipelined HGETALLs into a list of models, served by
the same uvicorn with the same flags), and GET /tasks/{id} once more with rate limiting on.
Per write, the Redis commands it cost (`INFO commandstats`, audit entry included). The load
comes from `wrk` when installed (a C client that leaves the CPU to the server) or else from
bench/loadgen.py (asyncio httpx), each in its own process, a fixed number of connections,
closed loop. The report names the generator.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.config import Profile
from bench.load import load_tasks, task_id_of
from bench.probe import ProbeError, run_probe
from bench.procs import Child, bench_env, wait_until
from bench.readprofile import profile_reads
from bench.redisstats import commandstats, connect, delta, flush
from bench.stats import Stat
from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.store.keys import Keys

__all__ = ["api_server", "load_once", "run"]

BASE = "/api/v1/tasks"
GET_IDS = 200
LIST_PATH = f"{BASE}/?status=pending&limit=100"
CREATE_BODY = (
    '{"sys_type":"mac_intel","task_type":"noop","xhs_account_id":"load-{n}",'
    '"xhs_account_name":"load {n}","user_query":"开始运营","user_topic":"科技",'
    '"interval":3600,"valid_time_range":[0,24]}'
)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


GET_ONE = "GET /tasks/{id}"
LIST_PAGE = "GET /tasks/?status=pending&limit=100"
CREATE = "POST /tasks/"
FLOOR_ONE = "floor: one HGETALL + model"
FLOOR_PAGE = "floor: 100 pipelined HGETALLs + models"
LIMITED_ONE = "GET /tasks/{id}, rate limiting on"
# Each endpoint and the floor it is compared with (same run, same size).
FLOORS = {GET_ONE: FLOOR_ONE, LIST_PAGE: FLOOR_PAGE, LIMITED_ONE: GET_ONE}
# A limit high enough never to refuse: what is measured is its bucket's cost per request.
RATE_LIMIT = "100000000/second"


def _endpoints(n: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Endpoint -> (the server it runs on, its requests)."""
    ids = [task_id_of(i) for i in range(0, n, max(1, n // GET_IDS))][:GET_IDS]
    # The floor page reads the same 100 tasks the real page shows (the first pending ones).
    page = ",".join(task_id_of(i) for i in range(min(n, 100)))
    return {
        GET_ONE: ("api", {"method": "GET", "paths": [f"{BASE}/{i}" for i in ids]}),
        FLOOR_ONE: ("floor", {"method": "GET", "paths": [f"/floor/tasks/{i}" for i in ids]}),
        LIST_PAGE: ("api", {"method": "GET", "paths": [LIST_PATH]}),
        FLOOR_PAGE: ("floor", {"method": "GET", "paths": [f"/floor/tasks/?ids={page}"]}),
        LIMITED_ONE: ("limited", {"method": "GET", "paths": [f"{BASE}/{i}" for i in ids]}),
        CREATE: ("api", {"method": "POST", "paths": [f"{BASE}/"], "body": CREATE_BODY}),
    }


def _wrk_script(spec: dict[str, Any], path: Path) -> None:
    """A wrk Lua script cycling the paths; in a body, `{n}` becomes a number unique across
    runs (LuaJIT's unseeded math.random repeats, so a run nonce and a counter instead)."""
    # Lua long brackets: raw UTF-8, no escapes (LuaJIT rejects JSON's \\u escapes).
    paths = ",".join(f"[==[{p}]==]" for p in spec["paths"])
    body = f"[==[{spec.get('body') or ''}]==]"
    path.write_text(
        f"""
local paths = {{{paths}}}
local body = {body}
local i = 0
local counter = 0
local run = "{time.time_ns()}"
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) tid = tid or 0 end
function request()
  i = i % #paths + 1
  if body ~= "" then
    counter = counter + 1
    local b = body:gsub("{{n}}", run .. "-" .. tid .. "-" .. counter)
    return wrk.format("{spec["method"]}", paths[i], {{["content-type"]="application/json"}}, b)
  end
  return wrk.format("{spec["method"]}", paths[i])
end
""",
        encoding="utf-8",
    )


def _parse_wrk(text: str) -> dict[str, Any]:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise ValueError(f"no {pct}% latency in wrk output:\n{text}")
        return float(m.group(1)) * _UNIT[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not rps or not total:
        raise ValueError(f"unexpected wrk output:\n{text}")
    n_errors = int(errors.group(1)) if errors else 0
    if sock:
        n_errors += sum(int(g) for g in sock.groups())
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "errors": n_errors,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def load_once(
    url: str, spec: dict[str, Any], profile: Profile, workdir: Path, duration_s: float
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk:
        script = workdir / "wrk.lua"
        _wrk_script(spec, script)
        seconds = max(1, math.ceil(duration_s))  # wrk takes whole seconds
        cmd = [wrk, "-t1", f"-c{profile.api_connections}", f"-d{seconds}s"]
        cmd += ["--latency", "-s", str(script), url]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0 or done.stderr.strip():
            # A script that does not load makes wrk request "/" instead: never a figure.
            raise ProbeError(f"wrk failed: {done.stderr or done.stdout}")
        return _parse_wrk(done.stdout)
    args = spec | {"url": url, "connections": profile.api_connections}
    return run_probe("bench.loadgen", args | {"duration_s": duration_s}, timeout_s=duration_s + 60)


def api_server(
    redis_url: str, port: int, workdir: Path, *, app: str = "api.main:create_app", **env: str
) -> Child:
    """uvicorn as `make run` and compose run the API: one worker, access log off."""
    args = ["-m", "uvicorn", app, *(["--factory"] if app.endswith("create_app") else [])]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    args += ["--no-access-log"]
    return Child(f"uvicorn-{port}", args, bench_env(redis_url, **env), workdir)


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run(url: str, profile: Profile, workdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    client = connect(url)
    keys = Keys("td:")
    work = Path(workdir)
    out: dict[str, Any] = {
        "generator": "wrk" if shutil.which("wrk") else "httpx (bench/loadgen.py)",
        "connections": profile.api_connections,
        "duration_s": profile.api_duration_s,
        "rate_limit": RATE_LIMIT,
        "sizes": [],
    }
    for n in profile.api_sizes:
        flush(client)
        load_tasks(url, keys, 0, n, now_ms=time.time_ns() // 1_000_000)
        servers = {
            "api": api_server(url, free_port(), work),
            "floor": api_server(url, free_port(), work, app="bench.floor:app"),
            "limited": api_server(url, free_port(), work, TASKDISPATCH_RATE_LIMIT=RATE_LIMIT),
        }
        bases = {name: f"http://127.0.0.1:{_port(s)}" for name, s in servers.items()}
        point: dict[str, Any] = {"stored": n, "endpoints": {}}
        try:
            for name, base in bases.items():
                if not wait_until(lambda b=base: _ready(b), 30):
                    raise ProbeError(f"{name} did not start:\n{servers[name].log_tail()}")
            for name, (server_name, spec) in _endpoints(n).items():
                log(f"api: {name} with {n:,} stored")
                server, base_url = servers[server_name], bases[server_name]
                load_once(base_url, spec, profile, work, 1.0)  # warm-up
                runs = []
                before = commandstats(client)
                for _ in range(profile.api_repeats):
                    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                    result = load_once(base_url, spec, profile, work, profile.api_duration_s)
                    cores = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
                    runs.append(result | {"server_cores": cores})
                ran = delta(before, commandstats(client))
                requests = sum(r["requests"] for r in runs)
                point["endpoints"][name] = {
                    "server_cores": Stat.of([r["server_cores"] for r in runs]).to_json(),
                    "rps": Stat.of([r["rps"] for r in runs]).to_json(),
                    "p50_ms": Stat.of([r["p50_ms"] for r in runs]).to_json(),
                    "p99_ms": Stat.of([r["p99_ms"] for r in runs]).to_json(),
                    "errors": sum(r["errors"] for r in runs),
                    "requests": requests,
                    "redis_commands": sum(c for c, _ in ran.values()) / max(requests, 1),
                }
        finally:
            for server in servers.values():
                server.stop()
        ratios = {}
        for name, floor in FLOORS.items():
            mine, base = point["endpoints"][name]["rps"], point["endpoints"][floor]["rps"]
            ratios[name] = mine["median"] / base["median"]
        point["ratios"] = ratios
        out["sizes"].append(point)
        if n == max(profile.api_sizes):
            out["profile"] = _profiles(url, n, log)
    flush(client)
    return out


# Reads profiled in-process at the largest size, and how many of each.
PROFILED = {GET_ONE: (f"{BASE}/{task_id_of(7)}", 2_000), LIST_PAGE: (LIST_PATH, 100)}


def _profiles(url: str, n: int, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Where each read's time goes in the server's process (bench/readprofile.py)."""
    out = {}
    for name, (target, reads) in PROFILED.items():
        log(f"api: profile of {reads:,} {name} in-process, {n:,} stored")
        try:
            out[name] = {
                "reads": reads,
                **profile_reads(url, target, reads),
            }
        except ImportError:  # pyinstrument comes from requirements/bench.lock
            return None
    return out


def _port(child: Child) -> int:
    args = child.proc.args
    assert isinstance(args, list)
    return int(args[args.index("--port") + 1])
