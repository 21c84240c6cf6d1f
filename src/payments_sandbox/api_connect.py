"""The sandbox's Stripe API for Connect (accounts, links, transfers, payouts) and events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from payments_sandbox.api_kit import Call, ObjectRoutes, Result, add_calls, add_object_routes
from payments_sandbox.errors import StripeApiError, invalid, no_such
from payments_sandbox.params import Params
from payments_sandbox.repository import EventRepository
from payments_sandbox.service import SandboxStripe

router = APIRouter()  # included by api.py, under its prefix


# ------------------------------------------------------------------ connect


async def _own_account(service: SandboxStripe, p: Params) -> dict[str, Any]:
    """``GET /v1/account``: the account of the ``Stripe-Account`` header."""
    if service.account is None:
        raise invalid("The sandbox platform has no account object; send Stripe-Account.")
    return (await service.load(service.account, "account")).body


add_calls(
    router,
    Call(
        "POST",
        "/accounts",
        SandboxStripe.create_account,
        "type country email capabilities business_type business_profile company controller "
        "default_currency external_account individual metadata settings tos_acceptance",
    ),
    Call("GET", "/account", _own_account),
    Call(
        "POST",
        "/account_links",
        SandboxStripe.create_account_link,
        "account type refresh_url return_url collect collection_options",
    ),
    Call(
        "POST",
        "/accounts/{account_id}/login_links",
        lambda s, p, account_id: s.create_login_link(account_id),
        expand=False,
    ),
    Call(
        "POST",
        "/transfers",
        SandboxStripe.create_transfer,
        "amount currency destination description metadata source_transaction "
        "source_type transfer_group",
    ),
    Call(
        "POST",
        "/transfers/{transfer_id}/reversals",
        lambda s, p, transfer_id: s.reverse_transfer(transfer_id, p),
        "amount description metadata refund_application_fee",
        expand=False,
    ),
    Call(
        "POST",
        "/payouts",
        SandboxStripe.create_payout,
        "amount currency description destination metadata method source_type statement_descriptor",
    ),
)

add_object_routes(
    router,
    ObjectRoutes("account", "accounts"),
    ObjectRoutes("transfer", "transfers", ("destination", "transfer_group")),
    ObjectRoutes("payout", "payouts", ("status", "destination"), also_allowed=("arrival_date",)),
)


# ------------------------------------------------------------------ events


async def _event(service: SandboxStripe, p: Params, event_id: str) -> Result:
    row = await EventRepository(service.session).get(event_id)
    if row is None or row.account != service.account:
        raise StripeApiError(
            404, f"No such event: '{event_id}'", code="resource_missing", param="id"
        )
    return row.payload


async def _events(service: SandboxStripe, p: Params) -> Result:
    """Events of the platform (or of the ``Stripe-Account``), newest first;
    ``delivery_success=false``: those the service has not acknowledged yet."""
    limit = p.integer("limit", minimum=1) or 10
    if limit > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    types = p.raw("types")
    wanted = [str(t) for t in types] if isinstance(types, list) else []
    if p.text("type"):
        wanted.append(p.required_text("type"))
    events = EventRepository(service.session)
    before = None
    cursor = p.text("starting_after")
    if cursor is not None:
        row = await events.get(cursor)
        if row is None:
            raise no_such("event", cursor, param="starting_after")
        before = row.seq
    created: dict[str, int] = {}
    for op in ("gt", "gte", "lt", "lte"):
        bound = p.integer(f"created.{op}")
        if bound is not None:
            created[op] = bound
    delivered = p.raw("delivery_success")
    rows, has_more = await events.page(
        account=service.account,
        types=wanted,
        limit=limit,
        starting_after=before,
        delivered=None if delivered is None else p.boolean("delivery_success"),
        created=created,
    )
    return {
        "object": "list",
        "data": [row.payload for row in rows],
        "has_more": has_more,
        "url": "/v1/events",
    }


add_calls(
    router,
    Call("GET", "/events/{event_id}", _event, expand=False),
    Call(
        "GET",
        "/events",
        _events,
        "limit starting_after ending_before type types created delivery_success",
        expand=False,
    ),
)
