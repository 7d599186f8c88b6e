"""Where a read's time goes: N `GET /tasks/{id}` served in-process under pyinstrument.

The app is driven straight through ASGI (no socket, no HTTP parser, no client), so the
profile holds only what the server's own process does per read: FastAPI routing and
dependencies, the store's one round trip through redis-py's asyncio client, decoding the
task, its waiting reason and the JSON answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.main import create_app
from bench.profiling import profile_call
from taskdispatch.settings import Settings

__all__ = ["profile_reads"]


async def _serve(app: Any, target: str, n: int) -> None:
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(n):
        await app(scope, receive, send)
    if set(statuses) != {200}:
        raise RuntimeError(f"GET {target}: answers {sorted(set(statuses))}, expected 200")


def profile_reads(redis_url: str, target: str, n: int) -> dict[str, Any]:
    """The profile (bench.profiling) of n reads of `target` (path and query), after
    n // 10 unprofiled ones."""
    app = create_app(Settings(redis_url=redis_url))
    lifespan = app.router.lifespan_context(app)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(lifespan.__aenter__())
        try:
            loop.run_until_complete(_serve(app, target, max(n // 10, 1)))
            return profile_call(lambda: loop.run_until_complete(_serve(app, target, n)))
        finally:
            loop.run_until_complete(lifespan.__aexit__(None, None, None))
    finally:
        loop.close()
