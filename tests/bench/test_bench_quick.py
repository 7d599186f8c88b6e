"""The benchmark suite still runs: its smallest profile, end to end, in a subprocess.

`python -m bench --profile test` runs the cheap measurements at their smallest size against
its own Redis and writes a report to a temporary directory (never docs/). Only the shape of
the results is checked, never a timing. Scheduling lag is left out (it needs real worker and
beat processes for tens of seconds; tests/bench/test_batch_publish.py runs a real worker).
The comparisons (RedBeat, pictures, profile) come from requirements/bench.lock: without them
the suite must still measure taskdispatch, and their test is skipped saying so.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = "tick,dispatch,api,memory,limits,notifications"
BENCH = [sys.executable, "-m", "bench", "--profile", "test", "--only", SECTIONS]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [*BENCH, "--out", str(out / "benchmarks.md"), "--json", str(out / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    results["_report"] = (out / "benchmarks.md").read_text()
    results["_images"] = sorted(p.name for p in (out / "img").glob("*.png"))
    return results


def _stat(value: Any) -> None:
    assert set(value) == {"median", "lo", "hi", "n"}
    assert value["lo"] <= value["median"] <= value["hi"]
    assert value["n"] >= 1


def test_taskdispatch_parts_produce_well_formed_results(bench_run: dict[str, Any]) -> None:
    tick = bench_run["tick"]
    (point,) = tick["taskdispatch"]
    assert point["n"] == 1_000
    _stat(point["tick_s"])
    _stat(point["round_trips"])
    assert point["rss_mib"] > 0
    assert point["breakdown"]["evalsha"] == 1  # the claim script ran once per tick

    persistent = tick["persistent"]
    assert [p["n"] for p in persistent] == [1_000]
    assert persistent[0]["ticks"] == tick["due"]  # one entry per tick

    dispatch = bench_run["dispatch"]
    for key in ("taskdispatch", "taskdispatch_no_events", "send_task", "send_task_batch", "lpush"):
        _stat(dispatch[key]["rate"])
    assert dispatch["taskdispatch"]["message_bytes"] > 0
    _stat(dispatch["ratios"]["send_task"])  # taken within each interleaved round

    memory = bench_run["memory"]
    _stat(memory["bytes_per_task"])
    assert memory["hash_fields"] > 0
    created = memory["api_created"]  # through the API: the audit trail is the one audit key
    assert (created["n"], created["audit_keys"]) == (1_000, 1)
    assert created["bytes_per_task"] > created["audit_bytes_per_task"] > 0

    api = bench_run["api"]
    assert "error" not in api, api
    (size,) = api["sizes"]
    for endpoint in size["endpoints"].values():
        _stat(endpoint["rps"])
        _stat(endpoint["p99_ms"])
        assert endpoint["errors"] == 0
    # Each read is compared with its framework floor, measured in the same run.
    assert set(size["ratios"]) == {
        "GET /tasks/{id}",
        "GET /tasks/?status=pending&limit=100",
        "GET /tasks/{id}, rate limiting on",
    }

    limits = bench_run["limits"]
    assert [c["limits"] for c in limits["cases"]] == [0, 1, 3, 1, 0, 0]
    for case in limits["cases"]:
        _stat(case["round_s"])
        _stat(case["commands"])
    # A limit is checked inside the lease's own script, a calendar and tags are placed in
    # Python: none adds a round trip.
    assert {c["extra_round_trips"] for c in limits["cases"]} == {0.0}

    report = bench_run["_report"]
    for heading in (
        "## Machine",
        "## Headline",
        "## 1. Tick cost",
        "## 2. Dispatch",
        "## 5.",
        "## 6.",
    ):
        assert heading in report


def test_notifications_cost_no_round_trip_on_the_round(bench_run: dict[str, Any]) -> None:
    """A notification, matching the rounds or not, adds nothing to a round's path; only the
    one that matches groups the task; its intake runs only while one is defined."""
    notify = bench_run["notifications"]
    cases = {c["case"]: c for c in notify["cases"]}
    assert list(cases) == [
        "no notification",
        "1 notification, matching no round",
        "1 notification, taking every round",
    ]
    for case in cases.values():
        _stat(case["round_trips"])
        _stat(case["intake_round_trips"])
    assert {c["extra_round_trips"] for c in cases.values()} == {0.0}
    assert cases["no notification"]["intake_round_trips"]["hi"] == 0
    assert cases["1 notification, matching no round"]["grouped_tasks"] == 0
    assert cases["1 notification, taking every round"]["grouped_tasks"] == 1
    _stat(notify["idle_loop"]["round_trips"])
    assert "## 10. Cost of notifications per round" in bench_run["_report"]


def test_report_figures_are_formatted_never_raw_statistics(bench_run: dict[str, Any]) -> None:
    """Every figure in the report is rendered as text, none as a Python dict."""
    assert "{'median'" not in bench_run["_report"]


def test_comparisons_produce_well_formed_results(bench_run: dict[str, Any]) -> None:
    missing = [m for m in ("redbeat", "matplotlib", "pyinstrument") if not _installed(m)]
    if missing:
        assert "celery-redbeat is not installed" in (
            bench_run["tick"]["redbeat_stopped"] or ""
        ) or ("redbeat" not in missing)
        pytest.skip(
            f"comparison packages not installed ({', '.join(missing)}): "
            "pip install -r requirements/bench.lock (make bench does)"
        )
    (point,) = bench_run["tick"]["redbeat"]
    _stat(point["tick_s"])
    _stat(bench_run["dispatch"]["redbeat"]["rate"])
    _stat(bench_run["dispatch"]["ratios"]["redbeat"])
    _stat(bench_run["memory"]["redbeat_bytes_per_entry"])
    assert bench_run["dispatch"]["taskdispatch"]["profile"]["functions"]
    for read in bench_run["api"]["profile"].values():
        assert read["functions"]
    assert bench_run["_images"] == [
        "bench-dispatch.png",
        "bench-floors.png",
        "bench-memory.png",
        "bench-tick.png",
    ]
