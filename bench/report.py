"""docs/benchmarks.md from one run's results: machine, headline against targets, details."""

from __future__ import annotations

from typing import Any

__all__ = ["capacity_per_s", "render"]


def _ms(stat: dict[str, Any], digits: int = 2) -> str:
    return (
        f"{stat['median'] * 1000:.{digits}f} ms "
        f"({stat['lo'] * 1000:.{digits}f}–{stat['hi'] * 1000:.{digits}f})"
    )


def _num(stat: dict[str, Any], fmt: str = ",.0f", unit: str = "") -> str:
    return f"{stat['median']:{fmt}}{unit} ({stat['lo']:{fmt}}–{stat['hi']:{fmt}})"


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**missed**")


def _failed(section: Any) -> str | None:
    if section is None:
        return "not run (excluded with --only)"
    if isinstance(section, dict) and "error" in section:
        return f"could not be measured: {section['error']}"
    return None


def _machine(m: dict[str, Any]) -> list[str]:
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu_model']}, {m['logical_cores']} logical cores "
        f"({m['physical_cores']} physical), {m['memory_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| Redis | redis-server {m['redis_server']} ({m['redis_malloc']}), started by the bench "
        "on a free port, no persistence |",
        f"| packages | {pkgs} |",
        f"| HTTP load generator | {m['wrk'] or 'httpx (bench/loadgen.py), wrk not installed'} |",
        f"| load average (1, 5, 15 min) | at start {', '.join(map(str, m['load_avg_at_start']))}; "
        f"at end {', '.join(map(str, m.get('load_avg_at_end') or ['?']))} — a shared machine: "
        "other work ran beside the bench, so absolute figures are noisy and only ratios "
        "within this run are claims |",
        "",
    ]


def _headline(r: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str, str, bool | None]] = []
    tick = r.get("tick")
    if tick and not _failed(tick) and tick["taskdispatch"]:
        td = tick["taskdispatch"]
        first, last = td[0], td[-1]
        ratio = last["tick_s"]["median"] / first["tick_s"]["median"]
        rows.append(
            (
                f"tick({last['n']:,}) / tick({first['n']:,}), {tick['due']} due",
                "≤ 1.5",
                f"{ratio:.2f} ({_ms(last['tick_s'])} vs {_ms(first['tick_s'])})",
                ratio <= 1.5,
            )
        )
        rss = [p["rss_mib"] for p in td]
        rows.append(
            (
                f"beat RSS, {first['n']:,} → {last['n']:,} stored",
                "flat",
                f"{rss[0]:.0f} → {rss[-1]:.0f} MiB",
                rss[-1] <= rss[0] * 1.1,
            )
        )
        trips = max(p["round_trips"]["median"] for p in td)
        miss_trips = max(p.get("miss_round_trips", 0) for p in td)
        rows.append(
            (
                f"Redis round trips per tick, {tick['due']} due",
                "≤ 2",
                f"{trips:.0f} at every size"
                + (f" (a tick the prediction missed: {miss_trips})" if miss_trips else ""),
                trips <= 2,
            )
        )
    d = r.get("dispatch")
    if d and not _failed(d):
        ratios = d["ratios"]
        if "redbeat" in ratios:
            x = ratios["redbeat"]
            rows.append(
                (
                    f"dispatch rate / RedBeat's, {d['due']:,} due (within each round)",
                    "≥ 10×",
                    _num(x, ".1f", "×"),
                    x["median"] >= 10,
                )
            )
        x = ratios["send_task"]
        rows.append(
            (
                "dispatch rate / per-call send_task ceiling (within each round)",
                "≥ 2×",
                _num(x, ".1f", "×"),
                x["median"] >= 2,
            )
        )
    w = r.get("worker")
    if w and not _failed(w):
        x = w["ratio"]
        rows.append(
            (
                "worker rounds/s / plain Celery no-op tasks/s (same worker)",
                "≥ 0.5×",
                _num(x, ".2f", "×"),
                x["median"] >= 0.5,
            )
        )
    lag = r.get("lag")
    if lag and not _failed(lag) and lag["points"]:
        capacity = capacity_per_s(r)
        if capacity:
            light = [p for p in lag["points"] if p["demand_per_s"] <= 0.8 * capacity]
            worst = max((p["p99_s"]["median"] for p in light), default=None)
            rows.append(
                (
                    f"scheduling lag p99 at every load ≤ 80% of capacity ({capacity:,.0f}/s)",
                    "≤ 0.5 s",
                    "no such load measured" if worst is None else f"{worst:.2f} s (worst)",
                    None if worst is None else worst <= 0.5,
                )
            )
        last = lag["points"][-1]
        p99 = last["p99_s"]["median"]
        rows.append(
            (f"scheduling lag p99, {last['tasks']:,} tasks", "≤ 0.5 s", f"{p99:.2f} s", p99 <= 0.5)
        )
    api = r.get("api")
    if api and not _failed(api) and api["sizes"] and "ratios" in api["sizes"][0]:
        for name, target in (
            ("GET /tasks/{id}", 0.8),
            ("GET /tasks/?status=pending&limit=100", 0.5),
        ):
            worst = min(size["ratios"][name] for size in api["sizes"])
            rows.append(
                (
                    f"`{name}` req/s / its framework floor (worst size)",
                    f"≥ {target}×",
                    f"{worst:.2f}×",
                    worst >= target,
                )
            )
    if api and not _failed(api) and len(api["sizes"]) >= 2:
        name = "GET /tasks/?status=pending&limit=100"
        a, b = api["sizes"][0], api["sizes"][-1]
        x = b["endpoints"][name]["p50_ms"]["median"] / a["endpoints"][name]["p50_ms"]["median"]
        rows.append(
            (
                f"list page p50 latency at {b['stored']:,} / at {a['stored']:,}",
                "≤ 2×",
                f"{x:.2f}×",
                x <= 2,
            )
        )
    mem = r.get("memory")
    if mem and not _failed(mem):
        b = mem["bytes_per_task"]["median"]
        rows.append(
            (f"Redis bytes per stored task at {mem['n']:,}", "≤ 1 KiB", f"{b:,.0f} B", b <= 1024)
        )
        api = mem.get("api_created")
        if api:
            b = api["bytes_per_task"]
            rows.append(
                (
                    f"Redis bytes per task created through the API at {api['n']:,}",
                    "≤ 2.5 KiB",
                    f"{b:,.0f} B",
                    b <= 2560,
                )
            )
    notify = r.get("notifications")
    if notify and not _failed(notify):
        extra = max(c["extra_round_trips"] for c in notify["cases"])
        rows.append(
            (
                "extra round trips on a round, a notification defined (matching it or not)",
                "0",
                f"{extra:+.1f}",
                extra == 0,
            )
        )
    out = [
        "## Headline (ratios within this run)",
        "",
        "| claim | target | measured | |",
        "|---|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} | {_verdict(ok)} |" for a, b, c, ok in rows]
    return [*out, ""]


def _tick(t: dict[str, Any], img: str | None) -> list[str]:
    miss = max((p.get("miss_round_trips", 0) for p in t.get("taskdispatch") or []), default=0)
    missed = f" ({miss} in one more run, untimed, with the prediction emptied)" if miss else ""
    out = [
        "## 1. Tick cost against stored tasks",
        "",
        f"Each point: {t['due']} slots due among N stored; the time for the beat to dispatch "
        f"them all (median of {t['repeats']} runs after a warm-up, min–max), the Redis commands "
        "the server ran (`INFO commandstats` delta, commands inside Lua scripts included), the "
        "round trips the beat made (requests written on its sockets) and the beat process's RSS "
        "(one fresh process per scheduler and size). taskdispatch: `RedisScheduler.dispatch_"
        "due()` (its `tick()` also sleeps); the same slots are due in every run, as a periodic "
        "task's are, so the beat passes them from the prediction its previous tick answered: "
        "the timed ticks are its steady ones (claim, publish). A due slot missing from the "
        "prediction (a new task, a slot moved earlier, a fresh beat's first tick) costs its "
        f"tick one more round trip{missed}. RedBeat: one `tick()`. PersistentScheduler sends one "
        f"entry per tick, so its figure is {t['due']} ticks.",
        "",
        "| scheduler | stored | dispatch of the due | ticks | round trips | Redis commands "
        "| beat RSS |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for kind, label in (
        ("taskdispatch", "taskdispatch"),
        ("redbeat", "RedBeat"),
        ("persistent", "PersistentScheduler"),
    ):
        for p in t.get(kind) or []:
            out.append(
                f"| {label} | {p['n']:,} | {_ms(p['tick_s'])} | {p['ticks']} | "
                f"{p['round_trips']['median']:.0f} | {p['commands']['median']:.0f} | "
                f"{p['rss_mib']:.0f} MiB |"
            )
        if t.get(f"{kind}_stopped"):
            out.append(f"| {label} | — | {t[f'{kind}_stopped']} | | | | |")
    td = t.get("taskdispatch") or []
    if td:
        b = td[-1]["breakdown"]
        out += [
            "",
            f"Commands of one taskdispatch tick at {td[-1]['n']:,} stored: "
            + ", ".join(f"{k} {v}" for k, v in b.items())
            + " — one EVALSHA (the claim script: heartbeat, dispatcher flag, "
            "`ZRANGEBYSCORE … LIMIT` of the due ids, a few hash and sorted-set commands per due "
            "task, the head of the due index as the next prediction, the next due time) and one "
            "pipeline (an `LPUSH` per message and one `PUBLISH` carrying the "
            "batch's `task-sent` events).",
        ]
    loads = [p for p in td if p.get("load_s")]
    if loads:
        out += [
            "",
            "Stored tasks were bulk-loaded, not created through the API: creating 1M tasks one "
            "HTTP request and one WATCH/MULTI transaction at a time would take far longer than "
            "the bench's budget. The loader writes the same records as the store (each a "
            "`taskdispatch.domain.models.Task` written by "
            "`taskdispatch.store.write.queue_task_write`, the "
            "code every API write goes through) in big non-transactional pipelines: "
            + ", ".join(f"{p['n']:,} in {p['load_s']:.1f} s (cumulative)" for p in loads)
            + ".",
        ]
    out += [
        "",
        "**What bounds it.** taskdispatch's tick is a fixed number of round trips and O(due) "
        "Redis work: the claim reads the due-time index with `LIMIT`, so the stored count "
        "only enters through O(log N) sorted-set lookups; what remains is building and "
        "publishing the due messages in Python. RedBeat also reads only due entries, but makes "
        "about 3 round trips per due entry (load, publish, reschedule) plus the lock. "
        "PersistentScheduler holds every entry in the beat process and compares the whole "
        "schedule on every tick (O(N) per tick, one entry sent per tick): its time and RSS grow "
        "with N.",
        "",
    ]
    if img:
        out += [f"![tick cost](img/{img})", ""]
    return out


def _dispatch(d: dict[str, Any], img: str | None) -> list[str]:
    rows = [
        (
            "taskdispatch beat (`dispatch_due`, task-sent events on, as configured)",
            d["taskdispatch"],
        ),
        ("taskdispatch beat, `task_send_sent_event=False`", d.get("taskdispatch_no_events")),
        ("RedBeat, one `tick()`", d.get("redbeat")),
        (
            "ceiling: Celery `send_task` per call, one producer (what a beat does per entry)",
            d["send_task"],
        ),
        ("ceiling: `send_task` inside kombu `producer.batch(1000)`", d["send_task_batch"]),
        (
            f"ceiling: raw redis-py LPUSH of the same {d['taskdispatch']['message_bytes']}-byte "
            "message, pipelined by 1,000",
            d["lpush"],
        ),
    ]
    out = [
        "## 2. Dispatch throughput",
        "",
        f"{d['due']:,} slots due at once, published by one beat (median of {d['repeats']} "
        "rounds, min–max); the ceilings publish the same message in the same rounds. CPU is "
        "the beat process's CPU time over wall time; Redis is the server's command time "
        "(`commandstats` usec) over wall time.",
        "",
        "| publisher | messages/s | round trips | beat CPU | Redis busy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        if r:
            out.append(
                f"| {name} | {_num(r['rate'])} | {r['round_trips']['median']:,.0f} | "
                f"{r['cpu_share']['median']:.0%} | {r['redis_share']['median']:.0%} |"
            )
    if not d.get("redbeat"):
        out.append("| RedBeat | not measured: celery-redbeat is not installed | | | |")
    r = d["ratios"]
    ratios = [f"{_num(r['send_task'], '.1f', '×')} the per-call send_task ceiling"]
    if "redbeat" in r:
        ratios.insert(0, f"{_num(r['redbeat'], '.1f', '×')} RedBeat")
    ratios.append(f"{_num(r['lpush'], '.3f', '×')} the raw LPUSH ceiling")
    prof = d["taskdispatch"].get("profile") or {}
    out += [
        "",
        "The publishers ran in interleaved rounds (each round runs every one once) and each "
        "ratio is taken within a round, so background load drifting on the shared machine "
        "hits both sides alike. taskdispatch's beat: " + ", ".join(ratios) + ".",
    ]
    if prof:
        out += [
            "",
            f"Profile of one dispatch of {d['due']:,} (pyinstrument, self time): "
            f"{_profile_headline(prof)}",
        ]
    cpu = d["taskdispatch"]["cpu_share"]["median"]
    busy = d["taskdispatch"]["redis_share"]["median"]
    out += [
        "",
        f"**What bounds it.** The beat's Python: its process is on CPU {cpu:.0%} of the "
        f"dispatch while Redis is busy {busy:.0%} of it, and round trips are a handful per "
        "1,000 messages. Each message is built by Celery's own protocol (`as_task_v2`, "
        "`send_task_message`, JSON + base64 body, kombu envelope); the `task-sent` events of "
        "a batch travel as one `task.multi` event message (as a Celery worker sends its task "
        "events), and the row without events shows what they still cost. The per-call "
        "`send_task` ceiling is bound by the same Python plus a synchronous round trip per "
        "message and one per event; RedBeat adds about three round trips per entry. Raw "
        "LPUSH shows Redis's own headroom.",
        "",
    ]
    if img:
        out += [f"![dispatch rates](img/{img})", ""]
    return out


def _profile_headline(prof: dict[str, Any]) -> str:
    """A profile's six biggest packages and functions by self time, as a sentence."""
    pk = ", ".join(f"{k} {v:.0%}" for k, v in list(prof["packages"].items())[:6])
    fn = "; ".join(f"`{f['name']}` {f['share']:.0%}" for f in prof["functions"][:6])
    return f"by package {pk}. Top functions: {fn}."


def capacity_per_s(results: dict[str, Any], *, of: str = "rounds_per_s") -> float | None:
    """Rounds/s (or, `of="plain_per_s"`, plain Celery no-op tasks/s) the worker of the lag
    section completes flat out (section 9), if measured."""
    w = results.get("worker")
    return None if not w or _failed(w) else float(w[of]["median"])


def _worker(w: dict[str, Any]) -> list[str]:
    return [
        "## 9. The worker's floor: a round against a plain Celery task",
        "",
        f"One `celery worker -P prefork -c {w['concurrency']}` (the app's own settings: "
        "events on, early acks, a message fetched only when a process is free), in "
        f"alternating phases: {w['n']:,} plain no-op tasks published at once (`bench.noop`), "
        f"then {w['n']:,} tasks of the `noop` handler made due at once (one beat claims and "
        "publishes them). Each phase is timed until the worker's own counters "
        "(`celery inspect stats`) show all done. Median of the phases (min–max).",
        "",
        "| what | per second |",
        "|---|---:|",
        f"| plain Celery no-op tasks | {_num(w['plain_per_s'])} |",
        f"| taskdispatch rounds (noop handler) | {_num(w['rounds_per_s'])} |",
        f"| ratio | {_num(w['ratio'], '.2f', '×')} |",
        "",
        "**What a round adds.** A round is a whole transaction of the scheduler, not a "
        "function call: it reads its task, takes the account's lease and any limit places "
        "(one script), marks the task running (one transaction), has its lease renewed by "
        "the process's renewer thread, and records its outcome, history, event, counters "
        "and next slot while releasing the lease (one transaction): about eight round trips "
        "on a synchronous client, beside Celery's own per-message path that the plain task "
        "also pays. The rounds/s here is the capacity the lag loads of section 3 are "
        "compared with.",
        "",
    ]


def _lag(
    lag: dict[str, Any],
    img: str | None,
    machine_cores: int | None = None,
    *,
    capacity: float | None = None,
    plain: float | None = None,
) -> list[str]:
    out = [
        "## 3. Scheduling lag end to end",
        "",
        f"Real processes: one `celery -A celery_app worker -P prefork -c {lag['concurrency']}` "
        "and one `celery -A celery_app beat` (taskdispatch's RedisScheduler) on the bench Redis. "
        "Tasks (`noop` handler, intervals 1–10 s drawn uniformly, seeded) are created through "
        "`TaskDispatcher` while both run, each with a `start_at` at a uniform random phase of "
        "its interval, as for tasks created over time (a burst of creations would otherwise "
        f"put many slots on the same instant); after {lag['warmup_s']:.0f} s of warm-up, "
        f"{lag['windows']} windows of {lag['window_s']:.0f} s. Lag = `started_ms − scheduled_ms` "
        "of every round that started in a window, read from the run history (`td:runs:*`, "
        "`RunRecord`; history kept at 1,000 rounds per task for the run). Figures: median over "
        "the windows (min–max). Demand = Σ 1/interval.",
        "",
        "| tasks | demand rounds/s | completed rounds/s | lag p50 | lag p99 | lag max "
        "| queued for a worker | CPU cores: worker / beat / redis |",
        "|---:|---:|---|---|---|---|---:|---|",
    ]
    for p in lag["points"]:
        c = p["cores"]
        out.append(
            f"| {p['tasks']:,} | {p['demand_per_s']:.0f} | {_num(p['rounds_per_s'])} | "
            f"{_num(p['p50_s'], '.3f', ' s')} | {_num(p['p99_s'], '.3f', ' s')} | "
            f"{_num(p['max_s'], '.2f', ' s')} | {p['queued']['median']:,.0f} | "
            f"{c['worker']['median']:.2f} / {c['beat']['median']:.2f} / "
            f"{c['redis']['median']:.2f} |"
        )
    ok = [p["tasks"] for p in lag["points"] if p["p99_s"]["median"] <= 0.5]
    bad = [p["tasks"] for p in lag["points"] if p["p99_s"]["median"] > 0.5]
    over = lag["blpop_overshoot_ms"]
    out += [
        "",
        f"p99 ≤ 0.5 s holds up to {max(ok):,} tasks" if ok else "p99 ≤ 0.5 s held at no count",
    ]
    out[-1] += f"; it breaks at {min(bad):,}." if bad else " (the largest count tried)."
    if capacity:
        share = ", ".join(
            f"{p['tasks']:,} tasks ask {p['demand_per_s'] / capacity:.0%}" for p in lag["points"]
        )
        out[-1] += (
            f" The same worker completes {capacity:,.0f} rounds/s flat out (section 9): "
            f"{share} of that."
        )
    beyond = [p for p in lag["points"] if plain and p["demand_per_s"] > plain]
    if plain and beyond:
        counts = ", ".join(f"{p['tasks']:,}" for p in beyond)
        out[-1] += (
            f" {counts} tasks ask more rounds/s than "
            f"the same worker runs even plain Celery no-op tasks ({plain:,.0f}/s): no round, "
            "however cheap, keeps that load's lag bounded on this worker; it needs more worker "
            "processes on more cores (docs/scaling.md)."
        )
    out += [
        "",
        "**What bounds it.** While the worker keeps up (completed ≈ demand, little queued), "
        "the lag is the beat's wake-up, one message hop and a free worker process. The beat "
        "sleeps in `BLPOP` on the wake list until the next slot, and Redis ends a blocking "
        "timeout only on its event-loop tick (`hz` 10): measured here, a 50 ms BLPOP returned "
        f"{_num(over, '.0f', ' ms')} late, so a beat that slept wakes up to ~100 ms after "
        "the slot, which is most of the tail while nothing queues. When demand exceeds what "
        "the worker completes, rounds queue in the broker and the queue and lag grow without "
        "bound: the worker's CPU "
        "(Celery's per-message path and the round's Redis transactions, on cores shared with "
        "beat and Redis) is then the limit.",
        "",
    ]
    broken = [p for p in lag["points"] if p["p99_s"]["median"] > 0.5]
    if broken:
        p, cores = broken[0], broken[0]["cores"]
        used = sum(c["median"] for c in cores.values())
        out[-2] += (
            f" At {p['tasks']:,} tasks the three processes used {used:.2f} cores of the "
            f"machine's {machine_cores} (worker {cores['worker']['median']:.2f}, beat "
            f"{cores['beat']['median']:.2f}, Redis {cores['redis']['median']:.2f}) and the "
            f"worker completed {p['rounds_per_s']['median']:.0f} of the "
            f"{p['demand_per_s']:.0f} rounds/s asked, while the machine's CPUs were "
            f"{p['machine_busy']['median']:.0%} busy (all processes, the bench's and others')."
        )
    if img:
        out += [f"![scheduling lag](img/{img})", ""]
    return out


def _api(api: dict[str, Any]) -> list[str]:
    out = [
        "## 4. API",
        "",
        f"One uvicorn worker (`uvicorn api.main:create_app --factory`, uvloop/httptools, access "
        f"log off as `make run` and compose run it); load from a separate process: "
        f"**{api['generator']}**, {api['connections']} connections, closed loop, "
        f"{api['duration_s']:g} s per run after a 1 s warm-up (median of the runs, min–max). "
        "Beside it, in the same run, the framework's floor (`bench/floor.py`, same uvicorn and "
        "flags): one `HGETALL` into a Pydantic model, and the page's 100 tasks read by 100 "
        "pipelined `HGETALL`s into a list of models; and the API once more with "
        f"`TASKDISPATCH_RATE_LIMIT={api['rate_limit']}` (never refusing: its bucket's cost). "
        "Tasks stored by the bulk loader; POST creates new accounts. Server CPU = uvicorn's "
        "CPU time over wall time; Redis commands = `INFO commandstats` per request (inside "
        "Lua included).",
        "",
        "| stored | endpoint | req/s | × its floor | p50 | p99 | errors | server CPU "
        "| Redis commands |",
        "|---:|---|---|---:|---|---|---:|---:|---:|",
    ]
    for size in api["sizes"]:
        ratios = size.get("ratios", {})
        for name, e in size["endpoints"].items():
            ratio = f"{ratios[name]:.2f}" if name in ratios else ""
            out.append(
                f"| {size['stored']:,} | `{name}` | {_num(e['rps'])} | {ratio} | "
                f"{_num(e['p50_ms'], '.1f', ' ms')} | {_num(e['p99_ms'], '.1f', ' ms')} | "
                f"{e['errors']} of {e['requests']:,} | {e['server_cores']['median']:.2f} | "
                f"{e.get('redis_commands', 0):.1f} |"
            )
    out += [
        "",
        "× its floor: `GET /tasks/{id}` against one HGETALL + model, the list page against "
        "100 pipelined HGETALLs + models, and rate limiting on against the same GET without.",
        "",
        "**What bounds it.** The single uvicorn process's CPU (server CPU ≈ 1 core in every "
        "run), and in it mostly redis-py's asyncio client: a read is one round trip (one "
        "script returns the task and every fact its waiting reason needs: the dispatcher "
        "flag, live workers and their queues, the account's lease, the use of the limit it "
        "waits for), a list page two (the page's ids, then the tasks with their facts). What "
        "the floor does not do, and a read must: resolve the caller's token and role (FastAPI "
        "dependencies), decode the hash into a task, compute its waiting reason (its calendar "
        "in its time zone), and answer its 40 fields with times in the task's zone; the models "
        "are built without validating twice. A write costs its commands: the hash and its "
        "index entries, the due score and wake token, the live event and the audit entry "
        "(one script: `XADD` and the task's link to it) in one transaction.",
        "",
    ]
    for name, prof in (api.get("profile") or {}).items():
        out += [
            f"Profile of {prof['reads']:,} `{name}` served in-process at the largest size "
            "(straight through ASGI: no socket, HTTP parser or client; pyinstrument, self "
            f"time): {_profile_headline(prof)}",
            "",
        ]
    return out


def _memory(m: dict[str, Any]) -> list[str]:
    out = [
        "## 5. Redis memory per task",
        "",
        f"`INFO memory` used_memory delta over {m['n']:,} tasks written as the store writes "
        "them (hash, account binding, every index, the capped event stream), no run history, "
        f"with Redis's default configuration (`hash-max-listpack-value "
        f"{m['listpack_value_limit']}`); median of the runs (min–max).",
        "",
        "| what | bytes per task |",
        "|---|---:|",
        f"| taskdispatch, all included | {_num(m['bytes_per_task'])} |",
        f"| the task hash (`MEMORY USAGE`, `{m['hash_encoding']}`, {m['hash_fields']} fields) | "
        f"{m['hash_bytes']:,} |",
        f"| the account binding (a string key) | {m['account_key_bytes']:,} |",
    ]
    for index in m.get("indexes", []):
        out.append(
            f"| index `{index['key']}` ({index['members']:,} members) | "
            f"{index['bytes_per_task']:,.0f} |"
        )
    out.append(f"| its share of the capped event stream | {m['events_bytes_per_task']:,.0f} |")
    if m.get("redbeat_bytes_per_entry"):
        out.append(
            "| RedBeat bare entry (definition + meta + schedule) | "
            f"{_num(m['redbeat_bytes_per_entry'])} |"
        )
    indexes = sum(i["bytes_per_task"] for i in m.get("indexes", []))
    out += [
        "",
        f"**What bounds it.** The task hash is a `{m['hash_encoding']}` of {m['hash_bytes']:,} B "
        "under Redis's defaults: fields at their default or unset are not stored, and a value "
        "longer than 64 bytes of a field no script reads (the run parameters, names, errors) "
        "is stored in 64-byte pieces, so one long value no longer turns the whole hash into a "
        f"hashtable (the longest value stored is {m['longest_value']} bytes). The indexes are "
        f"the rest: {indexes:,.0f} B per task in sorted sets, about 145 B per member (a "
        "skiplist node, a dict entry and the 36-byte task id), and a task is a member of "
        "every index that serves a listing in O(log N + page): all tasks, its status, each "
        "filter dimension with and without its status (sys_type, task_type, each tag), the "
        "next-run order, the search index (id and name) and the due index. 1 KiB per task "
        "would need fewer of them, i.e. slower filters (docs/redis-keys.md lists each).",
        "",
    ]
    api = m.get("api_created")
    if api:
        out += [
            f"**Created through the API.** {api['n']:,} tasks created by `POST /api/v1/tasks/` "
            "in-process (the design document's create body, one account each; one run), with "
            f"everything the API writes for them: {api['bytes_per_task']:,.0f} B per task, of "
            f"which {api['audit_bytes_per_task']:,.0f} B its audit entry, stored once in the "
            f"trail ({api['audit_keys']} audit key in all), and "
            f"{api['events_bytes_per_task']:,.0f} B its share of the event stream (capped at "
            "10,000 entries: past that, nothing per task); the task hash, its link to its "
            f"newest audit entry included, is a `{api['hash_encoding']}` of "
            f"{api['hash_bytes']:,} B.",
            "",
        ]
    return out


def _limits(m: dict[str, Any]) -> list[str]:
    out = [
        "## 6. Cost of features per round: limits, calendars, tags",
        "",
        f"One round run in-process (`RoundRunner.run`, a handler that returns at once), "
        f"{m['rounds']} rounds per run, {m['repeats']} runs per case; commands are what Redis "
        "ran (`INFO commandstats`, those inside Lua included), round trips what the runner "
        "sent. Ratios and differences are against the plain round, in this run. The calendar's "
        "windows cover every hour (so every round runs): its cost is placing each slot in it.",
        "",
        "| the task | time per round | × plain | Redis commands | "
        "of which scripts | extra commands | round trips | extra round trips |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in m["cases"]:
        out.append(
            f"| {c['case']} | {_ms(c['round_s'])} | "
            f"{c['time_ratio']:.2f} | {_num(c['commands'], '.1f')} | {_num(c['scripts'], '.1f')} | "
            f"{c['extra_commands']:+.1f} | {_num(c['round_trips'], '.1f')} | "
            f"{c['extra_round_trips']:+.1f} |"
        )
    out += [
        "",
        "**What it costs.** The admission that takes the account lease also takes the "
        "places (one script, so no round trip is added); each concurrency limit adds the "
        "commands of its checks inside that script, one `ZADD` in each renewal and a release "
        "script in the round's final transaction; a rate limit adds its sliding-window "
        '`ZADD`/`ZREMRANGEBYSCORE`/`ZCARD`. docs/semantics.md ("Limits") explains them. A '
        "calendar adds no Redis command: placing a slot in windows, weekdays and blackout "
        "dates, and drawing its jitter, are pure Python in the worker. Tags cost nothing per "
        "round: their index entries change only when the tags or the status do.",
        "",
    ]
    return out


def _notifications(m: dict[str, Any]) -> list[str]:
    idle = m["idle_loop"]
    out = [
        "## 10. Cost of notifications per round",
        "",
        f"Rounds run in-process as in section 6, but with a handler that raises, so that every "
        f"round writes `round.failed` (an event a notification may take); {m['rounds']} rounds "
        f"per run, {m['repeats']} runs per case, the cases interleaved. *On the round* is what "
        "the worker's round costs (commands Redis ran, round trips the runner sent), against the "
        "round with no "
        "notification in this run. *Intake* is what a notifier thread (in a beat or an API "
        "process, never the worker) spends per round to take the rounds' events in: "
        f"`Notifier.intake` every {m['intake_every']} rounds; it does not run while no "
        "notification is defined. Windows stay open while a case runs: a message costs per "
        "window, not per round.",
        "",
        "| notifications | time per round | × none | commands on the round | extra | "
        "round trips on the round | extra round trips | intake commands / round | "
        "intake round trips / round | intake time / round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in m["cases"]:
        out.append(
            f"| {c['case']} | {_ms(c['round_s'])} | {c['time_ratio']:.2f} | "
            f"{_num(c['commands'], '.1f')} | {c['extra_commands']:+.1f} | "
            f"{_num(c['round_trips'], '.1f')} | {c['extra_round_trips']:+.1f} | "
            f"{_num(c['intake_commands'], '.2f')} | {_num(c['intake_round_trips'], '.2f')} | "
            f"{_ms(c['intake_s'], 3)} |"
        )
    out += [
        "",
        "**What it costs.** Nothing on the round: the events a notification takes are the "
        "entries the round already writes to the events stream in its own transaction, so a "
        "round makes the same commands and round trips whether no notification is defined, "
        "one matches it or none does. The notifier takes them in off the round's path, a "
        "batch at a time (reading the tasks of the batch in one pipeline, the group writes "
        "and the acknowledgement in one MULTI). The times differ only as the machine's load "
        "does (the rounds do the very same work); the counts are exact. With no notification "
        "defined its loop costs "
        f"{idle['round_trips']['median']:.0f} round trips ({idle['commands']['median']:.0f} "
        "commands) per process per second, whatever the number of rounds.",
        "",
    ]
    return out


def _capacity(c: dict[str, Any]) -> list[str]:
    st, f, busiest = c["stored"], c["fleet"], c["points"][-1]
    out = [
        "## 7. Capacity of one Redis",
        "",
        f"One beat and one prefork worker (`-c {c['concurrency']}`) ran N tasks every "
        f"{c['interval_s']} s (`noop` handler), the task store on the bench Redis and the "
        "Celery broker on a second one, both with `appendonly yes`; "
        f"{c['windows']} windows of {c['window_s']:.0f} s per N. CPU is the Redis main "
        "thread's (`INFO cpu`: commands, socket I/O, replies, the AOF's writes), minus what "
        "the same processes cost with nothing due (idle window); commands are those run "
        "inside scripts and transactions too. bench/capacity.py describes the method.",
        "",
        "| N | rounds/s asked | finished | store Redis CPU / round | broker Redis CPU / round "
        "| store commands / round | broker commands / round | worker CPU / round | "
        "beat CPU / round |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in c["points"]:
        cpu, procs = p["redis_cpu_ms"], p["proc_cpu_ms"]
        out.append(
            f"| {p['tasks']} | {p['demand_per_s']:.0f} | {_num(p['rounds_per_s'], '.0f', '/s')} | "
            f"{_num(cpu['store'], '.3f', ' ms')} | {_num(cpu['broker'], '.3f', ' ms')} | "
            f"{_num(p['commands']['store'], '.1f')} | {_num(p['commands']['broker'], '.1f')} | "
            f"{_num(procs['worker'], '.2f', ' ms')} | {_num(procs['beat'], '.2f', ' ms')} |"
        )
    out += [
        "",
        "Idle cost of one worker and one beat: "
        + ", ".join(f"{n} Redis {v * 1000:.1f} ms/s" for n, v in busiest["idle_cpu_per_s"].items())
        + f". Commands per round at N = {busiest['tasks']}:",
        "",
    ]
    for server, commands in busiest["by_command"].items():
        top = sorted(commands.items(), key=lambda kv: -kv[1])[:14]
        out.append(f"- {server}: " + ", ".join(f"`{name}` {n:.2f}" for name, n in top))
    out += [
        "",
        f"**Stored tasks** ({st['stored']:,}): {st['memory_bytes_per_task']:.0f} B per task "
        f"({f['memory_mib_per_100k']:.0f} MiB per 100k); an AOF rewrite took "
        f"{st['aof_rewrite_s']:.2f} s (fork {st['fork_ms']:.1f} ms). Stored tasks that are "
        "not due cost no CPU: the claim reads only due members (section 1).",
        "",
        "| API read, one uvicorn process | req/s | Redis CPU per request | reads one core serves |",
        "|---|---:|---:|---:|",
    ]
    for name, read in st["reads"].items():
        out.append(
            f"| {name} | {_num(read['rps'])} | {_num(read['redis_cpu_us'], '.0f', ' µs')} | "
            f"{f['reads_per_core'][name]:,.0f}/s |"
        )
    per_1k, ceiling = f["core_per_1k_rounds"], f["ceiling_rounds_per_s"]
    out += [
        "",
        f"**Derived** (from N = {busiest['tasks']}). 1,000 rounds/s take "
        f"{per_1k['store']:.2f} core of the store's Redis and {per_1k['broker']:.2f} of the "
        f"broker's ({per_1k['one_server']:.2f} when both are one server). One core is full at "
        f"{ceiling['one_server']:,.0f} rounds/s on one server, {ceiling['store']:,.0f} for a "
        f"store alone; at {f['headroom']:.0%} of a core, "
        f"{f['at_headroom_rounds_per_s']['one_server']:,.0f} rounds/s. The worker and beat "
        "CPU that drives the single-server ceiling with a "
        f"`noop` handler is {f['worker_cores_at_ceiling']['one_server']:,.0f} cores "
        f"({f['worker_cores_per_1k_rounds']:.1f} per 1,000 rounds/s). docs/scaling.md turns "
        "these into a capacity plan.",
        "",
    ]
    return out


def _durability(d: dict[str, Any]) -> list[str]:
    raw = d["raw_us"]
    out = [
        "## 8. Cost of MIN_REPLICAS (WAIT for a replica)",
        "",
        "The bench Redis with one replica on the same machine; two uvicorn processes, "
        "`TASKDISPATCH_REDIS_MIN_REPLICAS` 0 and 1, loaded in interleaved runs with "
        f"{d['connections']} connections; ratios within each round. Raw: one connection, "
        f"`HSET` {raw['write']:.0f} µs alone, {raw['write + WAIT 1']:.0f} µs with `WAIT 1`.",
        "",
        "| write | MIN_REPLICAS | req/s | p50 | p99 | req/s × of 0 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in d["endpoints"].items():
        for m in (0, 1):
            x = e[f"min_replicas_{m}"]
            ratio = _num(e["rps_ratio"], ".2f") if m == 1 else ""
            out.append(
                f"| {name} | {m} | {_num(x['rps'])} | {_num(x['p50_ms'], '.1f', ' ms')} | "
                f"{_num(x['p99_ms'], '.1f', ' ms')} | {ratio} |"
            )
    out.append("")
    return out


def render(results: dict[str, Any], images: dict[str, str]) -> str:
    profile = results["profile"]
    out = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench{' --quick' if profile == 'quick' else ''}` "
        f"(profile **{profile}**, `make bench{'-quick' if profile == 'quick' else ''}`) on "
        f"{results['started']}; took {results['duration_s'] / 60:.1f} min. Every figure is the "
        "median of repeated runs with min–max in parentheses; every ratio is between figures "
        "of this one run, on this machine, against the same Redis. Measured, never estimated: a "
        "figure that could not be measured says why. See `bench/README.md` for the method.",
        "",
        *_machine(results["machine"]),
        *([f"Pictures not drawn: {results['no_images']}.", ""] if results.get("no_images") else []),
        *_headline(results),
        *(
            [f"![ratios against the floors](img/{images['floors']})", ""]
            if "floors" in images
            else []
        ),
    ]
    for key, fn in (("tick", _tick), ("dispatch", _dispatch)):
        section = results.get(key)
        if (why := _failed(section)) is not None:
            out += [f"## {key}", "", why, ""]
        else:
            out += fn(section, images.get(key))
    if (why := _failed(results.get("lag"))) is not None:
        out += ["## lag", "", why, ""]
    else:
        out += _lag(
            results["lag"],
            images.get("lag"),
            results["machine"]["logical_cores"],
            capacity=capacity_per_s(results),
            plain=capacity_per_s(results, of="plain_per_s"),
        )
    for key, fn2 in (
        ("api", _api),
        ("memory", _memory),
        ("limits", _limits),
        ("capacity", _capacity),
        ("durability", _durability),
        ("worker", _worker),
        ("notifications", _notifications),
    ):
        section = results.get(key)
        if (why := _failed(section)) is not None:
            out += [f"## {key}", "", why, ""]
        else:
            out += fn2(section)
            if key in images:
                out += [f"![{key}](img/{images[key]})", ""]
    return "\n".join(out).rstrip() + "\n"
