"""Specification of taskdispatch.engine.handlers: which handlers are async, which results a round
may record, and which task types the API learns without importing handler code."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import math
import warnings
from typing import Any

import pytest

from taskdispatch.engine.handlers import (
    BUILT_IN_TYPES,
    HandlerRegistry,
    RunContext,
    announced_types,
    announcement,
    check_result,
    configured_types,
    is_async,
    noop,
)
from taskdispatch.settings import Settings


async def _async_handler(ctx: RunContext) -> None:
    """An async handler."""


class _AsyncCallable:
    async def __call__(self, ctx: RunContext) -> None:
        """An object whose __call__ is async."""


class _SyncCallable:
    def __call__(self, ctx: RunContext) -> None:
        """An object whose __call__ is plain."""


class _Agent:
    async def run(self, ctx: RunContext) -> None:
        """An async method."""


def _sync_wrapper(ctx: RunContext) -> Any:
    return _async_handler(ctx)


@pytest.mark.parametrize(
    "handler",
    [
        _async_handler,
        functools.partial(_async_handler),
        functools.partial(functools.partial(_async_handler)),
        _AsyncCallable(),
        functools.partial(_AsyncCallable()),
        _Agent().run,
    ],
    ids=["function", "partial", "partial-of-partial", "object", "partial-of-object", "method"],
)
def test_handler_is_async_for_what_makes_a_coroutine_when_called(handler: Any) -> None:
    """async def functions, methods, objects with an async __call__, and partials of them."""
    assert is_async(handler)


@pytest.mark.parametrize(
    "handler",
    [noop, _SyncCallable(), functools.partial(noop), _sync_wrapper, _AsyncCallable],
    ids=["function", "object", "partial", "sync-wrapper", "class"],
)
def test_handler_is_not_async_for_plain_callables(handler: Any) -> None:
    """A plain function (even one returning a coroutine) or class is run as it is."""
    assert not is_async(handler)


@pytest.mark.parametrize(
    "result",
    [None, True, 3, 2.5, "text", [1, "a"], {"n": 1, "nested": {"list": [None]}}],
)
def test_handler_result_of_json_values_is_accepted(result: Any) -> None:
    """None, booleans, numbers, strings, and lists and dicts of them are results."""
    check_result(result)


@pytest.mark.parametrize(
    ("result", "says"),
    [
        ({"at": object()}, "not JSON-serialisable"),
        ({1, 2}, "not JSON-serialisable"),
        ({"score": math.nan}, "not JSON-serialisable"),
        ([math.inf], "not JSON-serialisable"),
    ],
    ids=["object", "set", "nan", "inf"],
)
def test_handler_result_not_json_raises_type_error_naming_the_fix(result: Any, says: str) -> None:
    """A value JSON cannot carry (or the API could not send) is refused, naming what to return."""
    with pytest.raises(TypeError, match=says) as info:
        check_result(result)
    assert "return None, a bool" in str(info.value)


def test_handler_result_coroutine_raises_naming_async_def_and_closes_it() -> None:
    """A coroutine returned by a plain function is refused, naming `async def`, and closed:
    no "never awaited" RuntimeWarning follows."""
    coroutine = asyncio.sleep(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="declared `async def`"):
            check_result(coroutine)
        del coroutine
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_handler_configured_types_come_from_names_without_importing() -> None:
    """Built-ins and the names in TASKDISPATCH_HANDLERS, though its modules do not exist."""
    settings = Settings(handlers="scout=no_such_package.agent:run, poster=nowhere:post")
    assert configured_types(settings) >= {*BUILT_IN_TYPES, "scout", "poster"}


def test_handler_announced_types_are_those_of_live_workers_only() -> None:
    """Announcements of workers not in `alive` (gone, or never seen) are left out."""
    stored = {
        "w1@a": announcement(HandlerRegistry({"scout": noop, "noop": noop})),
        "w2@b": json.dumps(["poster"]),
    }
    assert announced_types(stored, alive=["w1@a", "w3@c"]) == {"scout", "noop"}
