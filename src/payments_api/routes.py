"""Plumbing the routers share: the problem sets many routes declare, cursor pages, the
request id, and how a write says it was replayed or is still pending.

It sits below every domain with a router (it imports none of them), so any router may
use it without making a package loop.
"""

# No ``from __future__ import annotations``: :func:`cursor_page` builds its dependency's
# signature from its arguments, which FastAPI must read as objects, not strings.

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict, cast

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from payments_api.auth import Principal
from payments_api.deps import PrincipalDep
from payments_api.kit import amounts
from payments_api.kit.idempotency import REPLAYED_HEADER
from payments_api.kit.pagination import Limit
from payments_api.problems import Forbidden, ProblemError, problem_responses
from payments_api.stripe import errors as stripe_errors

PROVIDER_PROBLEMS = (stripe_errors.PaymentProviderError, stripe_errors.PaymentProviderUnavailable)
"""What any route that calls Stripe can answer: Stripe refused the call, or is down."""

AMOUNT_PROBLEMS = (amounts.AmountOutOfRange, amounts.CurrencyNotSupported, amounts.AmountNotInSteps)
"""What a route taking an amount to move in a currency refuses it with."""


def principal_with_role(role: str, refusal: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting callers whose token carries ``role``, from the token alone:
    for routes that call Stripe, which must not hold the request's database transaction
    open (``require_role`` reads the user row in it); ``refusal`` is the 403's detail."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has_role(role):
            raise Forbidden(refusal)
        return principal

    return check


AdminPrincipalDep = Annotated[
    Principal,
    Depends(principal_with_role("admin", "This action requires one of the roles: admin.")),
]


class Page(TypedDict):
    """A cursor page's request, as the list services take it (``**page``)."""

    limit: int
    starting_after: str | None


def cursor_page(description: str, *, max_length: int | None = None, **filters: Any) -> Any:
    """``Depends`` on the ``limit`` and ``starting_after`` query parameters of a list
    route, for ``Annotated[Page, cursor_page(...)]``; ``description`` says what
    ``starting_after`` names. ``filters`` are the list's optional query parameters that
    follow the cursor, ``name=Annotated[type, Query(...)]``: their values join the page
    under their names (annotate it with a :class:`Page` subclass naming them). Query
    parameters the route declares itself come before the cursor in its OpenAPI
    document."""

    async def page(
        limit: Limit = 20,
        starting_after: Annotated[
            str | None, Query(max_length=max_length, description=description)
        ] = None,
        **values: Any,
    ) -> Page:
        # The filters a Page subclass names: Page itself cannot type them.
        return cast(Page, {"limit": limit, "starting_after": starting_after, **values})

    # FastAPI reads the parameters off the signature: the cursor's two, then the filters.
    cursor = list(inspect.signature(page).parameters.values())[:2]
    optional = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in filters.items()
    ]
    page.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*cursor, *optional], return_annotation=Page
    )
    return Depends(page)


async def get_request_id(request: Request) -> str | None:
    """The id the request-id middleware gave this request, for the audit log."""
    request_id: str | None = getattr(request.state, "request_id", None)
    return request_id


RequestIdDep = Annotated[str | None, Depends(get_request_id)]


def mark_replayed(response: Response, replayed: bool) -> None:
    """A write that found its Idempotency-Key's first outcome says so, as the
    idempotency middleware does for the replays it answers itself."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"


def pending_responses(
    model: type[BaseModel], description: str, *problems: int | type[ProblemError]
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a write answered 201, or 202 with the same body while Stripe's
    answer is not known (:func:`accepted_unless_known`), and its ``problems``."""
    return {202: {"model": model, "description": description}, **problem_responses(*problems)}


def accepted_unless_known(response: Response, known: bool) -> None:
    """202 instead of the route's 201 while Stripe's answer is not known yet (the write
    is retried with the same key until it is)."""
    if not known:
        response.status_code = 202
