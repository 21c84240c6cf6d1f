"""The sandbox's Stripe API for Connect (accounts, links, transfers, payouts) and events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payments_sandbox.api_kit import (
    ObjectRoutes,
    Result,
    add_object_routes,
    execute,
    expanded,
    names,
)
from payments_sandbox.errors import StripeApiError, invalid, no_such
from payments_sandbox.params import Params
from payments_sandbox.repository import EventRepository
from payments_sandbox.service import SandboxStripe

router = APIRouter()  # included by api.py, under its prefix


# ------------------------------------------------------------------ connect

ACCOUNT_PARAMS = (
    "type",
    "country",
    "email",
    "capabilities",
    "business_type",
    "business_profile",
    "company",
    "controller",
    "default_currency",
    "external_account",
    "individual",
    "metadata",
    "settings",
    "tos_acceptance",
)


@router.post("/accounts")
async def create_account(request: Request) -> Response:
    return await execute(request, expanded(SandboxStripe.create_account), ACCOUNT_PARAMS)


@router.get("/account")
async def retrieve_own_account(request: Request) -> Response:
    """``GET /v1/account``: the account of the ``Stripe-Account`` header."""

    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        if service.account is None:
            raise invalid("The sandbox platform has no account object; send Stripe-Account.")
        return (await service.load(service.account, "account")).body

    return await execute(request, expanded(fetch), ())


@router.post("/account_links")
async def create_account_link(request: Request) -> Response:
    allowed = names("account type refresh_url return_url collect collection_options")
    return await execute(request, expanded(SandboxStripe.create_account_link), allowed)


@router.post("/accounts/{account_id}/login_links")
async def create_login_link(request: Request, account_id: str) -> Response:
    return await execute(request, lambda s, p: s.create_login_link(account_id), ())


@router.post("/transfers")
async def create_transfer(request: Request) -> Response:
    allowed = names(
        "amount currency destination description metadata source_transaction "
        "source_type transfer_group"
    )
    return await execute(request, expanded(SandboxStripe.create_transfer), allowed)


@router.post("/transfers/{transfer_id}/reversals")
async def create_transfer_reversal(request: Request, transfer_id: str) -> Response:
    allowed = names("amount description metadata refund_application_fee")
    return await execute(request, lambda s, p: s.reverse_transfer(transfer_id, p), allowed)


@router.post("/payouts")
async def create_payout(request: Request) -> Response:
    allowed = names(
        "amount currency description destination metadata method source_type statement_descriptor"
    )
    return await execute(request, expanded(SandboxStripe.create_payout), allowed)


add_object_routes(
    router,
    ObjectRoutes("account", "accounts"),
    ObjectRoutes("transfer", "transfers", ("destination", "transfer_group")),
    ObjectRoutes("payout", "payouts", ("status", "destination"), also_allowed=("arrival_date",)),
)


# ------------------------------------------------------------------ events


@router.get("/events/{event_id}")
async def retrieve_event(request: Request, event_id: str) -> Response:
    async def run(service: SandboxStripe, p: Params) -> Result:
        row = await EventRepository(service.session).get(event_id)
        if row is None or row.account != service.account:
            raise StripeApiError(
                404, f"No such event: '{event_id}'", code="resource_missing", param="id"
            )
        return row.payload

    return await execute(request, run, ())


@router.get("/events")
async def list_events(request: Request) -> Response:
    """Events of the platform (or of the ``Stripe-Account``), newest first;
    ``delivery_success=false``: those the service has not acknowledged yet."""

    async def run(service: SandboxStripe, p: Params) -> Result:
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

    allowed = names("limit starting_after ending_before type types created delivery_success")
    return await execute(request, run, allowed)
