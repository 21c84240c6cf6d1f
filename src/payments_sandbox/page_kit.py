"""What every sandbox page handler does: read the form, run an action in its own
transaction (its events go out after the commit), answer with a page or a redirect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from payments_sandbox.errors import StripeApiError
from payments_sandbox.html import message
from payments_sandbox.models import SandboxObject
from payments_sandbox.repository import ObjectRepository
from payments_sandbox.service import PageError, SandboxStripe
from payments_sandbox.wiring import sessionmaker_of, settings_of

T = TypeVar("T")


async def form_of(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


async def chosen(
    request: Request, choices: Mapping[str, T], *, field: str = "action", unknown: str = ""
) -> T:
    """What the form's ``field`` (the button pressed) stands for in ``choices``;
    ``PageError`` (``unknown``, or a plain "Unknown action") for anything else."""
    choice = (await form_of(request)).get(field, "")
    if choice not in choices:
        raise PageError(unknown or f"Unknown action {choice!r}.")
    return choices[choice]


async def act(request: Request, action: Callable[[SandboxStripe], Awaitable[T]]) -> T:
    """Run a page action in its own transaction; its events go out after the commit.
    A refusal raises ``PageError`` (the caller shows it) and changes nothing."""
    try:
        async with sessionmaker_of(request).begin() as session:
            result = await action(SandboxStripe(session, settings_of(request)))
    except StripeApiError as exc:
        raise PageError(exc.message) from exc
    return result


async def read(request: Request, object_id: str, type_: str) -> SandboxObject | None:
    async with sessionmaker_of(request)() as session:
        row = await ObjectRepository(session).get(object_id)
    return row if row is not None and row.type == type_ else None


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def not_found(what: str) -> Response:
    return message("Not found", f"No such {what} in the sandbox.", status_code=404)


def refused(title: str, error: PageError, back: str) -> Response:
    return message(title, str(error), back=back, status_code=409)


def account_status(account: dict[str, Any]) -> str:
    """A label for humans (the service derives its own status from the same fields)."""
    if account.get("charges_enabled") and account.get("payouts_enabled"):
        return "enabled"
    requirements = account.get("requirements") or {}
    if account.get("details_submitted") and requirements.get("disabled_reason"):
        return "restricted"
    return "pending"
