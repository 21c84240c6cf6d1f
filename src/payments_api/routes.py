"""Plumbing the routers share: the problem sets many routes declare, cursor pages, the
request id, and how a write says it was replayed or is still pending.

It sits below every domain with a router (it imports none of them), so any router may
use it without making a package loop.
"""

# No ``from __future__ import annotations``: :func:`cursor_page` builds its dependency's
# signature from its arguments, which FastAPI must read as objects, not strings.

from collections.abc import Awaitable, Callable
from typing import Annotated, TypedDict

from fastapi import Depends, Query, Request, Response

from payments_api.kit import amounts
from payments_api.kit.idempotency import REPLAYED_HEADER
from payments_api.kit.pagination import Limit
from payments_api.stripe import errors as stripe_errors

PROVIDER_PROBLEMS = (stripe_errors.PaymentProviderError, stripe_errors.PaymentProviderUnavailable)
"""What any route that calls Stripe can answer: Stripe refused the call, or is down."""

AMOUNT_PROBLEMS = (amounts.AmountOutOfRange, amounts.CurrencyNotSupported, amounts.AmountNotInSteps)
"""What a route taking an amount to move in a currency refuses it with."""


class Page(TypedDict):
    """A cursor page's request, as the list services take it (``**page``)."""

    limit: int
    starting_after: str | None


def cursor_page(
    description: str, *, max_length: int | None = None
) -> Callable[[int, str | None], Awaitable[Page]]:
    """The ``limit`` and ``starting_after`` query parameters of a list route, as one
    dependency; ``description`` says what ``starting_after`` names. They come after the
    route's own query parameters in its OpenAPI document, so routes whose filters follow
    the cursor declare the two themselves."""

    async def page(
        limit: Limit = 20,
        starting_after: Annotated[
            str | None, Query(max_length=max_length, description=description)
        ] = None,
    ) -> Page:
        return Page(limit=limit, starting_after=starting_after)

    return page


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


def accepted_unless_known(response: Response, known: bool) -> None:
    """202 instead of the route's 201 while Stripe's answer is not known yet (the write
    is retried with the same key until it is)."""
    if not known:
        response.status_code = 202
