"""The report's pictures (PNG, matplotlib's Agg backend): tick cost, dispatch rates, lag,
the ratios against the framework's floors, and memory per task by component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw_all"]

LABELS = {
    "taskdispatch": "taskdispatch RedisScheduler",
    "redbeat": "RedBeatScheduler",
    "persistent": "Celery PersistentScheduler",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tick_chart(tick: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("taskdispatch", "o"), ("redbeat", "s"), ("persistent", "^")):
        points = tick.get(kind) or []
        if not points:
            continue
        xs = [p["n"] for p in points]
        med = [p["tick_s"]["median"] * 1000 for p in points]
        lo = [m - p["tick_s"]["lo"] * 1000 for m, p in zip(med, points, strict=True)]
        hi = [p["tick_s"]["hi"] * 1000 - m for m, p in zip(med, points, strict=True)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker=marker, capsize=3, label=LABELS[kind])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks stored")
    ax.set_ylabel(f"ms to dispatch {tick['due']} due (median, min–max)")
    ax.set_title("Tick cost vs stored tasks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dispatch_chart(dispatch: dict[str, Any], path: Path) -> None:
    plt = _plt()
    bars = [
        ("taskdispatch beat", dispatch.get("taskdispatch")),
        ("taskdispatch beat,\nno task-sent events", dispatch.get("taskdispatch_no_events")),
        ("RedBeat", dispatch.get("redbeat")),
        ("send_task\nper call", dispatch.get("send_task")),
        ("send_task in\nproducer.batch", dispatch.get("send_task_batch")),
        ("raw LPUSH\npipelined", dispatch.get("lpush")),
    ]
    bars = [(name, r) for name, r in bars if r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    meds = [r["rate"]["median"] for _, r in bars]
    errs = [
        [m - r["rate"]["lo"] for m, (_, r) in zip(meds, bars, strict=True)],
        [r["rate"]["hi"] - m for m, (_, r) in zip(meds, bars, strict=True)],
    ]
    colors = ["tab:blue", "tab:cyan", "tab:orange", "tab:gray", "tab:gray", "tab:green"][
        : len(bars)
    ]
    ax.bar([name for name, _ in bars], meds, yerr=errs, capsize=3, color=colors)
    for i, m in enumerate(meds):
        ax.text(i, m * 1.08, f"{m:,.0f}", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("messages published per second (log)")
    ax.set_title(f"Dispatch of {dispatch['due']:,} due slots by one beat, and the ceilings")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lag_chart(lag: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for point in lag["points"]:
        lags = point["lags_s"]
        if lags:
            ax.hist(
                lags,
                bins=60,
                histtype="step",
                linewidth=1.4,
                label=f"{point['tasks']:,} tasks (p99 {point['p99_s']['median']:.2f} s)",
            )
    ax.axvline(0.5, color="red", linestyle="--", linewidth=1, label="target p99 0.5 s")
    ax.set_yscale("log")
    ax.set_xlabel("round start − slot (s)")
    ax.set_ylabel("rounds")
    ax.set_title("Scheduling lag, real worker and beat")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The floors each ratio is judged against, with the targets (docs/benchmarks.md).
FLOOR_TARGETS = {
    "GET /tasks/{id}": ("GET one task", 0.8),
    "GET /tasks/?status=pending&limit=100": ("list page of 100", 0.5),
}
WORKER_TARGET = 0.5
MEMORY_TARGET_B = 1024


def floors_chart(results: dict[str, Any], path: Path) -> bool:
    """Each read and the worker as a multiple of its framework floor, beside its target;
    False when the run measured none of them."""
    bars: list[tuple[str, float, float]] = []
    api = results.get("api")
    if isinstance(api, dict) and "error" not in api:
        for size in api["sizes"]:
            for name, (label, target) in FLOOR_TARGETS.items():
                if name in size.get("ratios", {}):
                    bars.append(
                        (f"{label}\n{size['stored']:,} stored", size["ratios"][name], target)
                    )
    worker = results.get("worker")
    if isinstance(worker, dict) and "error" not in worker:
        bars.append(("worker rounds\nvs plain Celery", worker["ratio"]["median"], WORKER_TARGET))
    if not bars:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = range(len(bars))
    values = [v for _, v, _ in bars]
    colors = ["tab:green" if v >= t else "tab:red" for _, v, t in bars]
    ax.bar(xs, values, color=colors)
    for i, (_, v, t) in enumerate(bars):
        ax.hlines(t, i - 0.4, i + 0.4, colors="black", linestyles="--", linewidth=1)
        ax.text(i, v + 0.02, f"{v:.2f}×", ha="center", fontsize=8)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(list(xs), [name for name, _, _ in bars], fontsize=7)
    ax.set_ylabel("× its floor (same run; dashed: target)")
    ax.set_title("Reads and rounds against the framework's floor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def memory_chart(memory: dict[str, Any], path: Path) -> None:
    """Bytes per task by component, stacked, beside a RedBeat entry and the 1 KiB target."""
    plt = _plt()
    parts = [
        ("task hash", float(memory["hash_bytes"])),
        ("account", float(memory["account_key_bytes"])),
    ]
    parts += [
        (index["key"].split(":", 1)[-1], float(index["bytes_per_task"]))
        for index in memory["indexes"]
    ]
    parts.append(("events", float(memory["events_bytes_per_task"])))
    rest = memory["bytes_per_task"]["median"] - sum(size for _, size in parts)
    if rest > 0:
        parts.append(("other (allocator, key overheads)", rest))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    left = 0.0
    cmap = plt.get_cmap("tab20")
    for i, (name, size) in enumerate(parts):
        ax.barh(["taskdispatch"], [size], left=left, color=cmap(i % 20), label=name)
        left += size
    redbeat = memory.get("redbeat_bytes_per_entry")
    if redbeat:
        ax.barh(["RedBeat entry"], [redbeat["median"]], color="tab:orange")
    ax.axvline(MEMORY_TARGET_B, color="red", linestyle="--", linewidth=1, label="target 1 KiB")
    ax.set_ylim(-0.5, 2.4)  # room above the bars for the legend
    ax.set_xlabel("Redis bytes per stored task (Redis defaults)")
    ax.set_title(f"Memory per task by component, {memory['n']:,} tasks")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_all(results: dict[str, Any], img_dir: Path) -> dict[str, str]:
    """Draw what the results hold; returns {figure: file name} for the report."""
    img_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for key, name, fn in (
        ("tick", "bench-tick.png", tick_chart),
        ("dispatch", "bench-dispatch.png", dispatch_chart),
        ("lag", "bench-lag.png", lag_chart),
        ("memory", "bench-memory.png", memory_chart),
    ):
        data = results.get(key)
        if isinstance(data, dict) and "error" not in data:
            fn(data, img_dir / name)
            drawn[key] = name
    if floors_chart(results, img_dir / "bench-floors.png"):
        drawn["floors"] = "bench-floors.png"
    return drawn
