"""The capacity and durability measurements still run: their smallest profile, end to end.

`python -m bench --profile test --only capacity` (and `durability`) starts a worker, a beat, a
second Redis for the broker, uvicorn processes and a replica, and writes its report to a
temporary directory (never docs/). Only the shape of the results and the arithmetic of the
derived figures are checked, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.capacity import fleet

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _bench(section: str, out: Path) -> dict[str, Any]:
    """One section at the test profile, in its own process (each within its test's time)."""
    command = [sys.executable, "-m", "bench", "--profile", "test", "--only", section]
    done = subprocess.run(
        [*command, "--out", str(out / "benchmarks.md"), "--json", str(out / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    results["_report"] = (out / "benchmarks.md").read_text()
    return results


def _stat(value: Any) -> None:
    assert set(value) == {"median", "lo", "hi", "n"}
    assert value["lo"] <= value["median"] <= value["hi"]


def test_bench_capacity_measures_both_servers_and_derives_the_ceiling(tmp_path: Path) -> None:
    """Per-round CPU of store and broker, read costs, and the fleet derived from them."""
    bench_run = _bench("capacity", tmp_path)
    capacity = bench_run["capacity"]
    (point,) = capacity["points"]
    for server in ("store", "broker"):
        _stat(point["redis_cpu_ms"][server])
        assert point["commands"][server]["median"] > 0
        assert point["by_command"][server]
    assert point["rounds_per_s"]["median"] > 0
    # The claim script runs in the store, publishes go to the broker only.
    assert "evalsha" in point["by_command"]["store"]
    assert "lpush" in point["by_command"]["broker"]
    stored = capacity["stored"]
    assert stored["memory_bytes_per_task"] > 0 and stored["fork_ms"] >= 0
    assert set(stored["reads"]) == {
        "GET /tasks/{id}",
        "GET /tasks/?limit=100",
        "GET /dispatcher/status",
    }
    assert capacity["fleet"] == fleet(point, stored)
    ceiling = capacity["fleet"]["ceiling_rounds_per_s"]
    assert ceiling["one_server"] < ceiling["store"]
    assert "## 7. Capacity of one Redis" in bench_run["_report"]


def test_bench_durability_compares_min_replicas_zero_and_one(tmp_path: Path) -> None:
    """Create and PATCH throughput with MIN_REPLICAS 0 and 1, and the raw WAIT cost."""
    bench_run = _bench("durability", tmp_path)
    durability = bench_run["durability"]
    assert set(durability["endpoints"]) == {"POST /tasks/", "PATCH /tasks/{id}"}
    for endpoint in durability["endpoints"].values():
        for setting in ("min_replicas_0", "min_replicas_1"):
            _stat(endpoint[setting]["rps"])
        _stat(endpoint["rps_ratio"])
    assert set(durability["raw_us"]) == {"write", "write + WAIT 1"}
    assert "## 8. Cost of MIN_REPLICAS" in bench_run["_report"]
