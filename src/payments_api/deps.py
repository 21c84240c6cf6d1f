"""Request-scoped dependencies, exposed as ``Annotated`` aliases ending in ``Dep``.

Every dependency here (and in the routers) is ``async def``, even when it awaits
nothing: FastAPI runs a plain ``def`` dependency in a worker thread, and those hops were
a measurable share of a balance read's CPU (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal, authenticate
from payments_api.kit.idempotency import ROUTE_SESSION
from payments_api.problems import Forbidden, ProblemError, Unauthorized
from payments_api.settings import Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.models import User
from payments_api.users.repository import UserRepository


def state_of(request: Request) -> AppState:
    """The application's resources, read off the request: for a hot route, where one
    dependency less to solve counts (``StateDep`` is the same as a dependency)."""
    state: AppState = request.app.state.resources
    return state


async def get_state(request: Request) -> AppState:
    return state_of(request)


StateDep = Annotated[AppState, Depends(get_state)]


async def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the block ends, rolled back on any
    exception.

    A one-transaction route called with an Idempotency-Key gets the session the
    idempotency middleware opened with the key claimed in it: the middleware stores the
    response in it and commits (or rolls back) once the response is known.
    """
    owned: AsyncSession | None = request.scope.get(ROUTE_SESSION)
    if owned is not None:
        yield owned
        await owned.flush()  # errors surface here, as the commit's would
        return
    async with state_of(request).sessionmaker.begin() as session:
        yield session


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction (``request_session``), committed before the response
    is sent (the function scope below)."""
    async with request_session(request) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_stripe(state: StateDep) -> StripeGateway:
    return state.stripe


StripeDep = Annotated[StripeGateway, Depends(get_stripe)]


def principal_of(request: Request) -> Principal:
    """The caller, as their bearer token says, or the 401 problem raised. The token was
    usually verified already by the middlewares: ``authenticate`` keeps the outcome in
    the request's scope."""
    principal = authenticate(request.scope, state_of(request).verifier)
    if isinstance(principal, ProblemError):
        raise principal
    if principal is None:  # no "Authorization: Bearer <token>" header
        raise Unauthorized("A bearer token is required.")
    # Every log line of the request names the user (never the token).
    structlog.contextvars.bind_contextvars(user_id=principal.sub)
    return principal


BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
"""``openapi_extra`` of a route that calls :func:`principal_of` itself instead of
declaring ``PrincipalDep``: its operation requires the bearer scheme all the same. For
the hottest read only (the balance): solving the dependency cost more than verifying a
cached token (bench/readpath.py)."""


class BearerPrincipal(HTTPBearer):
    """The caller, as their bearer token says: the OpenAPI security scheme and the
    dependency that resolves it in one. (As two dependencies, the scheme's and one
    reading it, solving them was a tenth of a balance read's instructions:
    bench/readpath.py.)"""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return principal_of(request)


get_principal = BearerPrincipal(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="JWT issued by the platform's auth.",
)
PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep, session: SessionDep) -> User:
    """The caller's user row, created on first sight."""
    return await UserRepository(session).upsert_from_principal(principal)


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: str) -> Callable[[CurrentUser], Awaitable[User]]:
    """A dependency admitting callers holding any of ``roles``."""

    async def check(user: CurrentUser) -> User:
        return holding_role(user, *roles)

    return check


def holding_role(user: User, *roles: str) -> User:
    """``user``, or 403 unless they hold any of ``roles``. The row's roles are the
    token's (``upsert_from_principal`` refreshes them), so the principal is not asked
    for again."""
    if set(roles).isdisjoint(user.roles):
        raise Forbidden(f"This action requires one of the roles: {', '.join(roles)}.")
    return user


AdminUser = Annotated[User, Depends(require_role("admin"))]


async def get_admin_session(_admin: AdminUser, session: SessionDep) -> AsyncSession:
    """The request's session (``SessionDep``), once the caller is known to be an admin:
    the one dependency of the admin routes that read and write through it."""
    return session


AdminSessionDep = Annotated[AsyncSession, Depends(get_admin_session)]
