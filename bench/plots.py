"""The report's pictures (PNG, matplotlib's Agg backend): tick cost, dispatch rates, lag."""

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


def draw_all(results: dict[str, Any], img_dir: Path) -> dict[str, str]:
    """Draw what the results hold; returns {figure: file name} for the report."""
    img_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for key, name, fn in (
        ("tick", "bench-tick.png", tick_chart),
        ("dispatch", "bench-dispatch.png", dispatch_chart),
        ("lag", "bench-lag.png", lag_chart),
    ):
        data = results.get(key)
        if isinstance(data, dict) and "error" not in data:
            fn(data, img_dir / name)
            drawn[key] = name
    return drawn
