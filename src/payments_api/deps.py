"""Request-scoped dependencies, exposed as ``Annotated`` aliases ending in ``Dep``.

Every dependency here (and in the routers) is ``async def``, even when it awaits
nothing: FastAPI runs a plain ``def`` dependency in a worker thread, and those hops were
a measurable share of a balance read's CPU (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal, authenticate
from payments_api.kit.idempotency import ROUTE_SESSION
from payments_api.problems import Forbidden, ProblemError, Unauthorized
from payments_api.settings import Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.models import User
from payments_api.users.repository import UserRepository


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.resources
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent (the
    function scope below), rolled back on any exception.

    A one-transaction route called with an Idempotency-Key gets the session the
    idempotency middleware opened with the key claimed in it: the middleware stores the
    response in it and commits (or rolls back) once the response is known.
    """
    owned: AsyncSession | None = request.scope.get(ROUTE_SESSION)
    if owned is not None:
        yield owned
        await owned.flush()  # errors surface here, as the commit's would
        return
    state: AppState = request.app.state.resources
    async with state.sessionmaker.begin() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """For lean reads: no session or transaction is opened for the request; the read
    takes a pooled connection per statement (``db.read_connection``) and opens a session
    only when it must write."""
    state: AppState = request.app.state.resources
    return state.sessionmaker


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def get_stripe(state: StateDep) -> StripeGateway:
    return state.stripe


StripeDep = Annotated[StripeGateway, Depends(get_stripe)]

_bearer = HTTPBearer(auto_error=False, description="JWT issued by the platform's auth.")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # ``credentials`` declares the scheme in the OpenAPI document; the token itself was
    # usually verified already by the middlewares (``authenticate`` keeps the outcome).
    state: AppState = request.app.state.resources
    principal = authenticate(request.scope, state.verifier)
    if isinstance(principal, ProblemError):
        raise principal
    if credentials is None or principal is None:
        raise Unauthorized("A bearer token is required.")
    # Every log line of the request names the user (never the token).
    structlog.contextvars.bind_contextvars(user_id=principal.sub)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep, session: SessionDep) -> User:
    """The caller's user row, created on first sight."""
    return await UserRepository(session).upsert_from_principal(principal)


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: str) -> Callable[[PrincipalDep, CurrentUser], Awaitable[User]]:
    """A dependency admitting callers holding any of ``roles``."""

    async def check(principal: PrincipalDep, user: CurrentUser) -> User:
        if not principal.roles.intersection(roles):
            raise Forbidden(f"This action requires one of the roles: {', '.join(roles)}.")
        return user

    return check


AdminUser = Annotated[User, Depends(require_role("admin"))]
