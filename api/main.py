"""The FastAPI application: `uvicorn api.main:app`, or `python -m api.main`.

`create_app(settings)` builds an app; creating it touches no network, so importing this
module is safe anywhere. The lifespan owns the one `TaskDispatcher` every request shares.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.dependencies import get_principal
from api.exceptions import (
    MAX_BODY_BYTES,
    BodySizeLimit,
    document_body_errors,
    error_responses,
    install_error_handlers,
)
from api.ratelimit import RateLimiter
from api.routers import (
    accounts,
    audit,
    dashboard,
    dispatcher,
    events,
    fleet,
    health,
    limits,
    metrics,
    notifications,
    schedule,
    tasks,
)
from taskdispatch import __version__
from taskdispatch.domain.exceptions import StoreUnavailableError
from taskdispatch.engine.notifier import NotifyLoop
from taskdispatch.service.access import AccessConfigError, TokenBook, anonymous_refusal
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.checks import run_startup_checks
from taskdispatch.store.keys import Keys

__all__ = ["app", "create_app"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    try:
        app.state.tokens = tokens = TokenBook.from_settings(settings)
    except AccessConfigError as exc:
        log.critical("api: %s", exc)
        raise
    if (refusal := anonymous_refusal(settings, tokens)) is not None:
        log.critical("%s", refusal)
        raise RuntimeError(refusal)
    try:
        run_startup_checks(app.state.settings, process="api")
    except StoreUnavailableError as exc:
        # Unlike a worker, the API is useful without Redis: it answers 503 until Redis is back.
        log.error("%s", exc)
    # Every API process sends alerts too, so they go out while all beats are down.
    notifier = NotifyLoop(settings)
    notifier.start()
    try:
        async with TaskDispatcher(app.state.settings) as task_dispatcher:
            app.state.dispatcher = task_dispatcher
            yield
    finally:
        await asyncio.to_thread(notifier.stop)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="任务调度器 API",
        description="任务调度器 Web API 接口",
        version=__version__,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    if settings.parsed_rate_limit is not None:
        app.add_middleware(
            RateLimiter,
            limit=settings.parsed_rate_limit,
            keys=Keys(settings.key_prefix),
        )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=MAX_BODY_BYTES,
        larger={"/api/v1/tasks/import": fleet.IMPORT_MAX_BYTES},
    )
    if settings.cors_origins:
        # Bearer tokens, not cookies: credentials stay off, so "*" cannot leak a session.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.include_router(health.router)
    # schedule before tasks: its /api/v1/tasks/preview must win over the tasks router's
    # /{task_id} routes.
    for router in (
        dispatcher.router,
        schedule.router,
        fleet.router,
        tasks.router,
        audit.router,
        accounts.router,
        limits.router,
        notifications.router,
        metrics.router,
        events.router,
    ):
        document_body_errors(router)
        app.include_router(
            router,
            dependencies=[Depends(get_principal)],
            responses=error_responses(401, 403, 429, 500, 503),
        )
    # Public: the page and its assets hold no data; the page asks for the token.
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="static")
    return app


app = create_app()


# A live event stream never ends by itself: without a bound, a stop would wait for every
# open dashboard to leave. Past it uvicorn cancels what is still open.
GRACEFUL_SHUTDOWN_S = 5


def main() -> None:
    settings: Settings = app.state.settings
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
