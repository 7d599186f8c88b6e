"""Where time goes (a beat's dispatch, an API read): a pyinstrument profile folded by
function and package."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["profile_call"]

PACKAGES = (
    ("/redis/", "redis-py (packing, socket I/O)"),
    ("/kombu/", "kombu (message envelope, batch)"),
    ("/celery/", "celery (as_task_v2, send_task_message, events)"),
    ("/json/", "json encoding"),
    ("uuid.py", "uuid"),
    ("base64.py", "base64"),
    ("/taskdispatch/", "taskdispatch"),
    ("/api/", "taskdispatch API"),
    ("/fastapi/", "fastapi (routing, dependencies)"),
    ("/starlette/", "starlette"),
    ("/pydantic", "pydantic"),
    ("/asyncio/", "asyncio"),
    ("/zoneinfo/", "zoneinfo"),
)


def _package(path: str) -> str:
    for needle, label in PACKAGES:
        if needle in path:
            return label
    return "other"


def profile_call(fn: Callable[[], Any], *, top: int = 10) -> dict[str, Any]:
    """Run fn under pyinstrument; self time by function (top N) and by package, in shares."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    fn()
    profiler.stop()
    root = profiler.last_session.root_frame()
    by_function: dict[str, float] = defaultdict(float)
    by_package: dict[str, float] = defaultdict(float)

    def walk(frame: Any, owner: Any, package: str) -> None:
        # Synthetic leaves ("[self]", "[await]") hold their parent's own time; a built-in
        # (socket.sendall, json's C encoder) counts for the package that called it.
        real = owner if frame.is_synthetic else frame
        path = real.file_path or "" if real is not None else ""
        if not path.startswith("<"):
            package = _package(path)
        self_time = frame.time - sum(child.time for child in frame.children)
        if self_time > 0 and real is not None:
            name = f"{real.function} ({real.file_path_short}:{real.line_no})"
            by_function[name] += self_time
            by_package[package] += self_time
        for child in frame.children:
            walk(child, real, package)

    walk(root, None, "other")
    total = sum(by_function.values()) or 1.0
    ranked = sorted(by_function.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_s": root.time,
        "functions": [{"name": k, "share": v / total} for k, v in ranked],
        "packages": {k: v / total for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
    }
