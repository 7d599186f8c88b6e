"""FastAPI dependencies: the app's settings and dispatcher, and the bearer-token guard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskdispatch.messages import text
from taskdispatch.service import TaskDispatcher
from taskdispatch.settings import Settings

__all__ = [
    "BearerDep",
    "DispatcherDep",
    "SettingsDep",
    "get_dispatcher",
    "get_settings_dep",
    "require_token",
]


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_dispatcher(request: Request) -> TaskDispatcher:
    """The one dispatcher the app's lifespan created."""
    dispatcher: TaskDispatcher = request.app.state.dispatcher
    return dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DispatcherDep = Annotated[TaskDispatcher, Depends(get_dispatcher)]

# auto_error=False: the scheme only documents the header; require_token decides, so that
# a server without a token accepts requests without one.
_bearer = HTTPBearer(
    auto_error=False, description="Required when the server sets TASKDISPATCH_API_TOKEN."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(key: str) -> HTTPException:
    return HTTPException(401, text(key), headers={"WWW-Authenticate": "Bearer"})


async def require_token(settings: SettingsDep, credentials: BearerDep) -> None:
    """When `settings.api_token` is set, demand `Authorization: Bearer <that token>`."""
    expected = settings.api_token
    if not expected:
        return
    if credentials is None:
        raise _unauthorized("unauthorized_missing")
    # Bytes, not str: compare_digest rejects non-ASCII str, and headers may carry any byte.
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise _unauthorized("unauthorized_invalid")
