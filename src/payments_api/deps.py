"""Request-scoped dependencies, exposed as ``Annotated`` aliases ending in ``Dep``.

Every dependency here (and in the routers) is ``async def``, even when it awaits
nothing: FastAPI runs a plain ``def`` dependency in a worker thread, and those hops were
a measurable share of a balance read's CPU (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal, authenticate
from payments_api.kit.idempotency import KEY_REQUIRED, ROUTE_SESSION, IdempotencyKeyRequired
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
    async with state_of(request).sessionmaker.begin() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def route_session(request: Request) -> AsyncSession:
    """The session the idempotency middleware opened for a ``@one_transaction`` route,
    the request's Idempotency-Key claimed in it; the middleware commits it (or rolls it
    back) once the route has answered. Without one the request has no key: the 400
    ``IdempotencyKeyDep`` answers.

    For a hot route's dependency, in place of ``SessionDep``: FastAPI runs a generator
    dependency inside an exit stack and a shielded context (13.59 M instructions per
    settlement with one, 13.09 M without: bench/cpu.py), and this session needs no
    closing. Such a
    route writes through statements, so nothing is left for a flush (``SessionDep``
    flushes after the route; here the middleware's commit would, and fail as a 500).
    """
    owned: AsyncSession | None = request.scope.get(ROUTE_SESSION)
    if owned is None:
        raise IdempotencyKeyRequired(KEY_REQUIRED)
    return owned


async def route_caller(request: Request, roles: Sequence[str] = ()) -> tuple[User, AsyncSession]:
    """What ``CurrentUser`` (or ``require_role(*roles)``) and ``SessionDep`` resolve for a
    ``@one_transaction`` route, in one call: the caller's user row on the middleware's
    session (``route_session``). Refusals in the dependencies' order: 401, 403 (on the
    token's roles, the ones the row is refreshed to), then a missing key's 400."""
    principal = principal_of(request)
    if roles:
        require_roles(principal.roles, roles)
    session = route_session(request)
    return await UserRepository(session).upsert_from_principal(principal), session


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
        # The row's roles are the token's (``get_current_user`` refreshes them), so the
        # principal is not asked for again: a dependency less to solve per request.
        require_roles(user.roles, roles)
        return user

    return check


def require_roles(held: Iterable[str], roles: Sequence[str]) -> None:
    """403 unless ``held`` (a user row's or a token's roles) has any of ``roles``."""
    if set(roles).isdisjoint(held):
        raise Forbidden(f"This action requires one of the roles: {', '.join(roles)}.")


AdminUser = Annotated[User, Depends(require_role("admin"))]


async def get_admin_session(_admin: AdminUser, session: SessionDep) -> AsyncSession:
    """The request's session (``SessionDep``), once the caller is known to be an admin:
    the one dependency of the admin routes that read and write through it."""
    return session


AdminSessionDep = Annotated[AsyncSession, Depends(get_admin_session)]
