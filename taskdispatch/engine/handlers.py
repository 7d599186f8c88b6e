"""Task-type handlers: what one round of a task actually does.

A handler is a callable taking a `RunContext` and returning a JSON-serialisable result (or
raising): a plain function, or an `async def` one (also a partial of one, or an object whose
`__call__` is one), which the worker runs on an event loop of its pool process
(`lease.HandlerGuard`). Built-ins: `xhs_type` (a demo round, the place to plug in the real
account agent) and `noop`. Users add or replace handlers with

- the setting `TASKDISPATCH_HANDLERS="type=package.module:function,..."`, or
- the entry-point group `taskdispatch.engine.handlers` (name = task type, value = callable).

Only workers import handler code. Each announces the task types it has handlers for (a hash,
`Keys.worker_handlers`), and the API accepts a type that is configured (`configured_types`,
read from the same settings without importing anything) or announced by a live worker.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from taskdispatch.settings import Settings

__all__ = [
    "BUILT_IN_TYPES",
    "Handler",
    "HandlerRegistry",
    "ProgressSink",
    "RunContext",
    "announced_types",
    "announcement",
    "check_result",
    "configured_types",
    "is_async",
    "load_registry",
    "noop",
    "xhs_demo_round",
]

ENTRY_POINT_GROUP = "taskdispatch.handlers"


class ProgressSink(Protocol):
    """Takes a round's progress (`progress.ProgressReporter` in a worker)."""

    def report(self, message: object, fraction: object = None) -> None: ...


class _NoProgress:
    def report(self, message: object, fraction: object = None) -> None:
        pass


_NO_PROGRESS = _NoProgress()


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
    # Where `progress` goes: the worker's per-round reporter (progress.py); a context made
    # outside a worker (tests, a direct call) reports to nowhere.
    reporter: ProgressSink = field(default=_NO_PROGRESS, repr=False)

    def progress(self, message: str, fraction: float | None = None) -> None:
        """Tell what the round is doing now (`fraction` of it done, 0..1, if known).

        Shown on the task, the dashboard and the event stream while the round runs; call it
        as often as you like, from any thread or coroutine: it only keeps the latest value,
        which the worker writes at most once a second. It never raises: a message longer than
        200 characters is cut, a fraction outside [0, 1] is clamped, one that is not a
        number is left out (with a warning in the worker log).
        """
        self.reporter.report(message, fraction)


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


BUILT_IN_TYPES = ("xhs_type", "noop")
_BUILT_INS: tuple[Handler, ...] = (xhs_demo_round, noop)


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
    registry = HandlerRegistry(dict(zip(BUILT_IN_TYPES, _BUILT_INS, strict=True)))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        registry.register(ep.name, ep.load())
    for name, target in parse_handler_setting(settings.handlers).items():
        registry.register(name, import_handler(target))
    return registry


def configured_types(settings: Settings) -> set[str]:
    """The task types `load_registry` would register, from their names alone: the API
    learns them without importing (or even finding) any handler code."""
    names = {*BUILT_IN_TYPES, *entry_points(group=ENTRY_POINT_GROUP).names}
    return names | set(parse_handler_setting(settings.handlers))


def announcement(registry: HandlerRegistry) -> str:
    """What a worker stores under its name in `Keys.worker_handlers`: its task types."""
    return json.dumps(registry.names())


def announced_types(stored: Mapping[str, str], *, alive: Collection[str]) -> set[str]:
    """The task types announced (`Keys.worker_handlers`, as read) by the workers in `alive`."""
    return {name for worker in alive if worker in stored for name in json.loads(stored[worker])}


def is_async(handler: Callable[..., Any]) -> bool:
    """Whether calling `handler` makes a coroutine for an event loop to run: an `async def`
    function or method, a partial of one, or an object whose `__call__` is one."""
    target = handler
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isroutine(target) or not callable(target):
        return False
    return inspect.iscoroutinefunction(type(target).__call__)


def check_result(result: object) -> None:
    """Raise TypeError, naming the fix, if `result` cannot be a round's result: history
    stores it as JSON, and a value that only looks stored (a coroutine's repr, a NaN the
    API cannot send) would hide that the round did not do its work."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never to be awaited: closed now, it warns nobody
        raise TypeError(
            f"the handler returned {type(result).__name__} {result!r} instead of its result: "
            "a handler that awaits must be declared `async def` (the worker then runs it on "
            "its event loop); a plain function must do its work and return the result"
        )
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the handler's result is not JSON-serialisable ({exc}); return None, a bool, a "
            "finite number, a string, or lists and dicts of them"
        ) from None
