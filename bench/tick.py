"""1. Tick cost against the number of stored tasks, for the three schedulers.

Every size is stored side by side under its own key prefix (`td1000:`, `redbeat1000:`, ...),
so the sizes can be measured in interleaved rounds: round 1 measures every scheduler at
every size, then round 2, ... On a shared machine the background load drifts; interleaving
spreads that drift over all sizes instead of loading it onto whichever ran last, which keeps
the ratios between sizes honest. Each (scheduler, size, round) runs in a fresh process
(bench/tick_probe.py), whose RSS is the beat's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import apps
from bench.config import Profile
from bench.load import load_redbeat, load_tasks
from bench.probe import ProbeError, run_probe
from bench.redisstats import connect, flush
from bench.stats import Stat
from taskdispatch.store.keys import Keys

__all__ = ["run"]

PROBE_TIMEOUT_S = 600.0
KINDS = ("taskdispatch", "redbeat", "persistent")


def td_prefix(n: int) -> str:
    return f"td{n}:"


def redbeat_prefix(n: int) -> str:
    return f"redbeat{n}:"


def _summarise(raws: list[dict[str, Any]], load_s: float | None) -> dict[str, Any]:
    def joined(key: str) -> list[float]:
        return [v for raw in raws for v in raw[key]]

    setups = [raw["setup_s"] for raw in raws if raw.get("setup_s") is not None]
    return {
        "n": raws[0]["n"],
        "tick_s": Stat.of(joined("tick_s")).to_json(),
        "round_trips": Stat.of(joined("round_trips")).to_json(),
        "miss_round_trips": max(raw.get("miss_round_trips", 0) for raw in raws),
        "commands": Stat.of(joined("commands")).to_json(),
        "breakdown": raws[-1]["breakdown"],
        "ticks": raws[0]["ticks"],
        "rss_mib": statistics.median(raw["rss_bytes"] for raw in raws) / 2**20,
        "setup_s": statistics.median(setups) if setups else None,
        "load_s": load_s,
        "processes": len(raws),
    }


def _persistent_limit_reason(profile: Profile, largest: dict[str, Any] | None) -> str:
    why = f"not run above {profile.persistent_max:,} entries"
    if largest is None:
        return why
    per_tick_ms = largest["tick_s"]["median"] / largest["ticks"] * 1000
    return why + (
        f": at {largest['n']:,} its beat needed {largest['setup_s']:.1f} s to start and "
        f"{largest['rss_mib']:.0f} MiB, and every tick compares all entries ({per_tick_ms:.0f} ms "
        "per tick, one entry sent per tick); 10x the entries does not fit the bench's budget"
    )


def run(url: str, profile: Profile, workdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    client = connect(url)
    sizes = profile.tick_sizes
    out: dict[str, Any] = {"due": profile.tick_due, "repeats": profile.tick_repeats}
    kinds = [k for k in KINDS if k != "redbeat" or apps.have_redbeat()]
    sizes_of = {
        k: [n for n in sizes if k != "persistent" or n <= profile.persistent_max] for k in kinds
    }

    flush(client)
    load_s: dict[tuple[str, int], float] = {}
    now_ms = time.time_ns() // 1_000_000
    for n in sizes:
        log(f"tick: storing {n:,} tasks (taskdispatch records)")
        t0 = time.perf_counter()
        load_tasks(url, Keys(td_prefix(n)), 0, n, now_ms=now_ms)
        load_s["taskdispatch", n] = time.perf_counter() - t0
    if "redbeat" in kinds:
        for n in sizes:
            log(f"tick: storing {n:,} RedBeat entries")
            t0 = time.perf_counter()
            app = apps.celery_app(url, redbeat_prefix=redbeat_prefix(n))
            load_redbeat(url, app, 0, n, now_s=time.time())
            load_s["redbeat", n] = time.perf_counter() - t0

    rounds = profile.tick_rounds
    per_round = max(1, profile.tick_repeats // rounds)
    raws: dict[tuple[str, int], list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for r in range(rounds):
        for kind in kinds:
            for n in sizes_of[kind]:
                if kind in failed:
                    continue
                log(f"tick: round {r + 1}/{rounds}, {kind} at {n:,} stored")
                args: dict[str, Any] = {"scheduler": kind, "url": url, "n": n}
                args |= {"due": profile.tick_due, "repeats": per_round, "workdir": workdir}
                args["prefix"] = td_prefix(n) if kind == "taskdispatch" else redbeat_prefix(n)
                try:
                    raws.setdefault((kind, n), []).append(
                        run_probe("bench.tick_probe", args, timeout_s=PROBE_TIMEOUT_S)
                    )
                except ProbeError as exc:
                    failed[kind] = f"stopped at {n:,}: the probe {exc}"

    for kind in KINDS:
        points = [
            _summarise(raws[kind, n], load_s.get((kind, n))) for n in sizes if (kind, n) in raws
        ]
        out[kind] = points
        out[f"{kind}_stopped"] = failed.get(kind)
    if "redbeat" not in kinds:
        out["redbeat_stopped"] = "celery-redbeat is not installed"
    if not failed.get("persistent") and any(n > profile.persistent_max for n in sizes):
        out["persistent_stopped"] = _persistent_limit_reason(
            profile, out["persistent"][-1] if out["persistent"] else None
        )
    out["rounds"] = rounds
    flush(client)
    client.close()
    return out
