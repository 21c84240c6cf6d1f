"""Stripe's events about plans, subscriptions and their invoices."""

from __future__ import annotations

from payments_api.subscriptions.plans import PlanCatalog
from payments_api.subscriptions.stripe_events import SubscriptionEvents
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent


async def product_changed(event: StripeEvent, context: HandlerContext) -> None:
    product = dict(event.data_object)
    if event.type == "product.deleted":
        product["active"] = False
    await PlanCatalog(context.session).apply_product(product, event.created)


async def price_changed(event: StripeEvent, context: HandlerContext) -> None:
    price = dict(event.data_object)
    if event.type == "price.deleted":
        price["active"] = False
    await PlanCatalog(context.session).apply_price(price, event.created, context.stripe)


def _events(context: HandlerContext) -> SubscriptionEvents:
    return SubscriptionEvents(context.session, context.stripe, context.settings)


async def subscription_changed(event: StripeEvent, context: HandlerContext) -> None:
    await _events(context).subscription_changed(event.data_object, event.created, event.type)


async def subscription_trial_will_end(event: StripeEvent, context: HandlerContext) -> None:
    await _events(context).trial_will_end(event.data_object, event.created)


async def invoice_paid(event: StripeEvent, context: HandlerContext) -> None:
    await _events(context).invoice_paid(event.data_object, event.created)


async def invoice_payment_failed(event: StripeEvent, context: HandlerContext) -> None:
    await _events(context).invoice_payment_failed(event.data_object, event.created)


async def invoice_payment_action_required(event: StripeEvent, context: HandlerContext) -> None:
    await _events(context).invoice_payment_action_required(event.data_object, event.created)


HANDLERS: dict[str, EventHandler] = {
    "product.created": product_changed,
    "product.updated": product_changed,
    "product.deleted": product_changed,
    "price.created": price_changed,
    "price.updated": price_changed,
    "price.deleted": price_changed,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "customer.subscription.paused": subscription_changed,
    "customer.subscription.resumed": subscription_changed,
    "customer.subscription.trial_will_end": subscription_trial_will_end,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_payment_action_required,
}
