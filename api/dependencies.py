"""FastAPI dependencies: the app's settings, who is asking (`PrincipalDep`), what their role
allows (`requires`), and the dispatcher acting for them (`DispatcherDep`).

All `async def`, though none awaits: FastAPI runs a plain `def` dependency in a worker
thread, and those hand-offs were a large share of a read's time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskdispatch.domain.messages import text
from taskdispatch.service.access import (
    ANONYMOUS,
    Principal,
    Role,
    TokenBook,
    anonymous_allowed_from,
)
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings

__all__ = [
    "ADMIN",
    "OPERATOR",
    "BearerDep",
    "DispatcherDep",
    "PrincipalDep",
    "ServiceDep",
    "SettingsDep",
    "get_principal",
    "get_settings_dep",
    "requires",
]


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

# auto_error=False: the scheme only documents the header; get_principal decides, so that
# a server without tokens accepts requests without one.
_bearer = HTTPBearer(
    auto_error=False,
    description="Required when the server has tokens (TASKDISPATCH_API_TOKEN(S)).",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(key: str) -> HTTPException:
    return HTTPException(401, text(key), headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request, credentials: BearerDep) -> Principal:
    """The token's name and role; the anonymous admin when the server has no token."""
    book: TokenBook = request.app.state.tokens
    if not book.configured:
        client = request.client.host if request.client is not None else None
        if not anonymous_allowed_from(request.app.state.settings, client):
            raise HTTPException(403, text("anonymous_remote"))
        return ANONYMOUS
    if credentials is None:
        raise _unauthorized("unauthorized_missing")
    principal = book.identify(credentials.credentials)
    if principal is None:
        raise _unauthorized("unauthorized_invalid")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def requires(role: Role) -> Callable[[Principal], Awaitable[None]]:
    """A dependency refusing (403, naming the role needed) a principal below `role`."""

    async def check(principal: PrincipalDep) -> None:
        if not principal.may(role):
            raise HTTPException(
                403,
                text(
                    "forbidden_role",
                    needed=role.label,
                    name=principal.name,
                    role=principal.role.label,
                ),
            )

    return check


OPERATOR = Depends(requires(Role.OPERATOR))
ADMIN = Depends(requires(Role.ADMIN))


async def get_service(request: Request) -> TaskDispatcher:
    """The one dispatcher the app's lifespan created (for routes that need no principal)."""
    dispatcher: TaskDispatcher = request.app.state.dispatcher
    return dispatcher


ServiceDep = Annotated[TaskDispatcher, Depends(get_service)]


async def get_dispatcher(request: Request, principal: PrincipalDep) -> TaskDispatcher:
    """The dispatcher acting for the request's principal (its name goes into the audit)."""
    service: TaskDispatcher = request.app.state.dispatcher
    return service.acting_as(principal.name)


DispatcherDep = Annotated[TaskDispatcher, Depends(get_dispatcher)]
