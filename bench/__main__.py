"""`python -m bench [--quick]`: run every measurement, write docs/benchmarks.md and its PNGs.

It starts its own redis-server on a free port (never touching another Redis), runs the
measurements in order, stops everything it started and writes the report. A measurement
that fails is reported as not measured, with the reason, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    api,
    capacity,
    dispatch,
    durability,
    lag,
    limits,
    machine,
    memory,
    notifications,
    report,
    tick,
    worker,
)
from bench.config import PROFILES
from bench.probe import ROOT
from taskdispatch.dev.embedded_redis import EmbeddedRedis
from taskdispatch.settings import get_settings

SECTIONS = (
    "tick",
    "dispatch",
    "worker",
    "lag",
    "api",
    "memory",
    "limits",
    "notifications",
    "capacity",
    "durability",
)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 2 minutes)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="overrides --quick")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--img-dir", type=Path, default=None, help="default: <out dir>/img")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "profile": profile.name,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    with (
        tempfile.TemporaryDirectory(prefix="taskdispatch-bench-") as work,
        EmbeddedRedis() as server,
    ):
        # Everything below, and every process it starts, uses this Redis and no other.
        os.environ["TASKDISPATCH_REDIS_URL"] = server.url
        get_settings.cache_clear()
        _log(f"bench Redis {server.url}, profile {profile.name}")
        results["machine"] = machine.describe(server.url)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "tick": lambda: tick.run(server.url, profile, work, _log),
            "dispatch": lambda: dispatch.run(server.url, profile, _log),
            "lag": lambda: lag.run(
                server.url, profile, work, _log, capacity_per_s=report.capacity_per_s(results)
            ),
            "api": lambda: api.run(server.url, profile, work, _log),
            "memory": lambda: memory.run(server.url, profile, _log),
            "limits": lambda: limits.run(server.url, profile, _log),
            "notifications": lambda: notifications.run(server.url, profile, _log),
            "capacity": lambda: capacity.run(server.url, profile, work, _log),
            "durability": lambda: durability.run(server.url, profile, work, _log),
            "worker": lambda: worker.run(server.url, profile, work, _log),
        }
        for name in SECTIONS:
            if name not in only:
                results[name] = None
                continue
            t0 = time.perf_counter()
            try:
                results[name] = steps[name]()
            except Exception as exc:  # one broken measurement must not hide the others
                _log(f"{name} failed: {exc}")
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            _log(f"{name} done in {time.perf_counter() - t0:.0f} s")
    results["duration_s"] = time.perf_counter() - started
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    from bench import plots

    img_dir = args.img_dir or args.out.parent / "img"
    try:
        images = plots.draw_all(results, img_dir)
    except ImportError as exc:  # matplotlib comes from requirements/bench.lock
        _log(f"no pictures: {exc}")
        images, results["no_images"] = {}, f"{exc} (pip install -r requirements/bench.lock)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(results, images), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    _log(f"wrote {args.out} ({results['duration_s'] / 60:.1f} min)")
    return results


def main() -> None:
    results = run()
    failed = [s for s in SECTIONS if isinstance(results.get(s), dict) and "error" in results[s]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
