"""The sandbox's Stripe API for Billing: products, prices, subscriptions, invoices, test
clocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter

from payments_sandbox.api_kit import (
    LIST_PARAMS,
    Call,
    ObjectRoutes,
    PathOperation,
    Result,
    add_calls,
    add_object_routes,
)
from payments_sandbox.billing import SandboxBilling
from payments_sandbox.params import Params
from payments_sandbox.service import SandboxStripe

router = APIRouter()  # included by api.py, under its prefix


# ------------------------------------------------------------------ billing


def _billing(call: Callable[..., Awaitable[Result]]) -> PathOperation:
    """A ``SandboxBilling`` operation run as a ``Call``: ``call(billing, params, *path_values)``."""

    async def run(service: SandboxStripe, p: Params, *path_values: str) -> Result:
        return await call(SandboxBilling(service), p, *path_values)

    return run


add_calls(
    router,
    Call(
        "POST",
        "/products",
        _billing(SandboxBilling.create_product),
        "id name description active metadata marketing_features",
    ),
    Call(
        "POST",
        "/prices",
        _billing(SandboxBilling.create_price),
        "product currency unit_amount recurring active lookup_key nickname metadata",
    ),
    Call(
        "POST",
        "/prices/{price_id}",
        _billing(lambda billing, p, price_id: billing.update_price(price_id, p)),
        "active metadata",
    ),
    Call(
        "POST",
        "/subscriptions",
        _billing(SandboxBilling.create_subscription),
        "customer items default_payment_method metadata trial_from_plan payment_behavior "
        "payment_settings",
    ),
    Call(
        "POST",
        "/subscriptions/{subscription_id}",
        _billing(
            lambda billing, p, subscription_id: billing.update_subscription(subscription_id, p)
        ),
        "cancel_at_period_end items proration_behavior proration_date default_payment_method "
        "pause_collection",
    ),
    Call(
        "DELETE",
        "/subscriptions/{subscription_id}",
        _billing(lambda billing, p, subscription_id: billing.cancel_subscription(subscription_id)),
        "invoice_now prorate",
    ),
    Call(
        "POST",
        "/invoices/{invoice_id}/pay",
        _billing(lambda billing, p, invoice_id: billing.pay_invoice(invoice_id, p)),
        "payment_method off_session",
        expand=False,
    ),
    Call(
        "POST",
        "/invoices/create_preview",
        _billing(SandboxBilling.preview),
        "customer subscription subscription_details",
    ),
    Call(
        "GET",
        "/invoice_payments",
        _billing(SandboxBilling.invoice_payments),
        " ".join((*LIST_PARAMS, "invoice")),
    ),
    Call(
        "POST",
        "/test_helpers/test_clocks/{clock_id}/advance",
        _billing(
            lambda billing, p, clock_id: billing.advance_clock(
                clock_id, p.required_integer("frozen_time", minimum=0)
            )
        ),
        "frozen_time",
        expand=False,
    ),
)


add_object_routes(
    router,
    ObjectRoutes("product", "products", ("active",)),
    ObjectRoutes("price", "prices", ("type", "product"), also_allowed=("active",)),
    ObjectRoutes("subscription", "subscriptions"),
    ObjectRoutes("invoice", "invoices"),
)
