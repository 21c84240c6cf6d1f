"""The sandbox's Stripe API for Billing: products, prices, subscriptions, invoices, test
clocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payments_sandbox.api_kit import (
    LIST_PARAMS,
    ObjectRoutes,
    Operation,
    add_object_routes,
    execute,
    expanded,
    names,
)
from payments_sandbox.billing import SandboxBilling
from payments_sandbox.params import Params
from payments_sandbox.service import SandboxStripe

router = APIRouter()  # included by api.py, under its prefix


# ------------------------------------------------------------------ billing


def _billing(
    call: Callable[[SandboxBilling, Params], Awaitable[dict[str, Any]]],
) -> Operation:
    async def fetch(service: SandboxStripe, p: Params) -> dict[str, Any]:
        return await call(SandboxBilling(service), p)

    return expanded(fetch)


@router.post("/products")
async def create_product(request: Request) -> Response:
    allowed = names("id name description active metadata marketing_features")
    return await execute(request, _billing(SandboxBilling.create_product), allowed)


@router.post("/prices")
async def create_price(request: Request) -> Response:
    allowed = names("product currency unit_amount recurring active lookup_key nickname metadata")
    return await execute(request, _billing(SandboxBilling.create_price), allowed)


@router.post("/prices/{price_id}")
async def update_price(request: Request, price_id: str) -> Response:
    return await execute(
        request,
        _billing(lambda billing, p: billing.update_price(price_id, p)),
        names("active metadata"),
    )


@router.post("/subscriptions")
async def create_subscription(request: Request) -> Response:
    allowed = names(
        "customer items default_payment_method metadata trial_from_plan payment_behavior "
        "payment_settings"
    )
    return await execute(request, _billing(SandboxBilling.create_subscription), allowed)


@router.post("/subscriptions/{subscription_id}")
async def update_subscription(request: Request, subscription_id: str) -> Response:
    allowed = names(
        "cancel_at_period_end items proration_behavior proration_date default_payment_method "
        "pause_collection"
    )
    return await execute(
        request,
        _billing(lambda billing, p: billing.update_subscription(subscription_id, p)),
        allowed,
    )


@router.delete("/subscriptions/{subscription_id}")
async def cancel_subscription(request: Request, subscription_id: str) -> Response:
    return await execute(
        request,
        _billing(lambda billing, p: billing.cancel_subscription(subscription_id)),
        names("invoice_now prorate"),
    )


@router.post("/invoices/{invoice_id}/pay")
async def pay_invoice(request: Request, invoice_id: str) -> Response:
    return await execute(
        request,
        lambda s, p: SandboxBilling(s).pay_invoice(invoice_id, p),
        names("payment_method off_session"),
    )


@router.post("/invoices/create_preview")
async def preview_invoice(request: Request) -> Response:
    allowed = names("customer subscription subscription_details")
    return await execute(request, _billing(SandboxBilling.preview), allowed)


@router.get("/invoice_payments")
async def list_invoice_payments(request: Request) -> Response:
    return await execute(
        request, _billing(SandboxBilling.invoice_payments), (*LIST_PARAMS, "invoice")
    )


@router.post("/test_helpers/test_clocks/{clock_id}/advance")
async def advance_test_clock(request: Request, clock_id: str) -> Response:
    return await execute(
        request,
        lambda s, p: SandboxBilling(s).advance_clock(
            clock_id, p.required_integer("frozen_time", minimum=0)
        ),
        names("frozen_time"),
    )


add_object_routes(
    router,
    ObjectRoutes("product", "products", ("active",)),
    ObjectRoutes("price", "prices", ("type", "product"), also_allowed=("active",)),
    ObjectRoutes("subscription", "subscriptions"),
    ObjectRoutes("invoice", "invoices"),
)
