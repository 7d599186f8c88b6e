"""Task-type handlers: what one round of a task actually does.

A handler is a plain callable taking a `RunContext` and returning a JSON-serialisable
result (or raising). Built-ins: `xhs_type` (a demo round, the place to plug in the real
account agent) and `noop`. Users add or replace handlers with

- the setting `TASKDISPATCH_HANDLERS="type=package.module:function,..."`, or
- the entry-point group `taskdispatch.handlers` (name = task type, value = callable).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

from taskdispatch.settings import Settings

__all__ = ["Handler", "HandlerRegistry", "RunContext", "load_registry", "noop", "xhs_demo_round"]

ENTRY_POINT_GROUP = "taskdispatch.handlers"


@dataclass(frozen=True)
class RunContext:
    task_id: str
    account_id: str
    account_name: str
    task_type: str
    sys_type: str
    round_num: int
    kwargs: Mapping[str, Any]
    scheduled_for: datetime
    # Grows with every round of the task (and every change of its schedule): an external
    # system that remembers the highest token it accepted per task can refuse the writes
    # of a round that was superseded (docs/reliability.md, "Fencing side effects").
    fencing_token: int = 0
    # Unique per round.
    run_id: str = ""


Handler = Callable[[RunContext], Any]


def noop(ctx: RunContext) -> dict[str, Any]:
    """Returns at once; for benchmarks and tests of the scheduler itself."""
    return {"round": ctx.round_num}


def xhs_demo_round(ctx: RunContext) -> dict[str, Any]:
    """A stand-in for operating one social-media account for one round.

    It sleeps `demo_duration_s` seconds (run parameter, default 2) to behave like a real
    round, fails on purpose when `demo_fail` is true (to try the error path), and
    returns a summary. Replace it with the real agent via TASKDISPATCH_HANDLERS.
    """
    duration_s = float(ctx.kwargs.get("demo_duration_s", 2))
    time.sleep(duration_s)
    if ctx.kwargs.get("demo_fail"):
        raise RuntimeError(f"demo round of account '{ctx.account_id}' failed (demo_fail is set)")
    return {
        "account": ctx.account_id,
        "round": ctx.round_num,
        "query": ctx.kwargs.get("user_query"),
        "topic": ctx.kwargs.get("user_topic"),
        "simulated_s": duration_s,
    }


class HandlerRegistry:
    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})

    def register(self, task_type: str, handler: Handler) -> None:
        self._handlers[task_type] = handler

    def get(self, task_type: str) -> Handler:
        try:
            return self._handlers[task_type]
        except KeyError:
            raise LookupError(
                f"no handler for task_type '{task_type}'; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)


def import_handler(target: str) -> Handler:
    """Import `package.module:function`."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler '{target}' must look like 'package.module:function'")
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def parse_handler_setting(value: str) -> dict[str, str]:
    """`"a=pkg.mod:fn, b=pkg.mod:other"` -> {"a": "pkg.mod:fn", "b": "pkg.mod:other"}."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(
                f"TASKDISPATCH_HANDLERS item '{item}' must look like 'type=package.module:function'"
            )
        pairs[name.strip()] = target.strip()
    return pairs


def load_registry(settings: Settings) -> HandlerRegistry:
    """Built-ins, then entry points, then the setting (later ones replace earlier)."""
    registry = HandlerRegistry({"xhs_type": xhs_demo_round, "noop": noop})
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        registry.register(ep.name, ep.load())
    for name, target in parse_handler_setting(settings.handlers).items():
        registry.register(name, import_handler(target))
    return registry
