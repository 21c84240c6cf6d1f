"""Stripe's events about plans, subscriptions and their invoices."""

from __future__ import annotations

from payments_api.stripe.billing_objects import Invoice, Price, Product, Subscription
from payments_api.subscriptions.plans import PlanCatalog
from payments_api.subscriptions.stripe_events import SubscriptionEvents
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent, reads


async def product_changed(event: StripeEvent, product: Product, context: HandlerContext) -> None:
    if event.type == "product.deleted":
        product = product.model_copy(update={"active": False})
    await PlanCatalog(context.session).apply_product(product, event.created)


async def price_changed(event: StripeEvent, price: Price, context: HandlerContext) -> None:
    if event.type == "price.deleted":
        price = price.model_copy(update={"active": False})
    await PlanCatalog(context.session).apply_price(price, event.created, context.stripe)


def _events(context: HandlerContext) -> SubscriptionEvents:
    return SubscriptionEvents(context.session, context.stripe, context.settings)


async def subscription_changed(
    event: StripeEvent, subscription: Subscription, context: HandlerContext
) -> None:
    await _events(context).subscription_changed(subscription, event.created, event.type)


async def subscription_trial_will_end(
    event: StripeEvent, subscription: Subscription, context: HandlerContext
) -> None:
    await _events(context).trial_will_end(subscription, event.created)


async def invoice_paid(event: StripeEvent, invoice: Invoice, context: HandlerContext) -> None:
    await _events(context).invoice_paid(invoice, event.created)


async def invoice_payment_failed(
    event: StripeEvent, invoice: Invoice, context: HandlerContext
) -> None:
    await _events(context).invoice_payment_failed(invoice, event.created)


async def invoice_payment_action_required(
    event: StripeEvent, invoice: Invoice, context: HandlerContext
) -> None:
    await _events(context).invoice_payment_action_required(invoice, event.created)


HANDLERS: dict[str, EventHandler] = {
    "product.created": reads(Product, product_changed),
    "product.updated": reads(Product, product_changed),
    "product.deleted": reads(Product, product_changed),
    "price.created": reads(Price, price_changed),
    "price.updated": reads(Price, price_changed),
    "price.deleted": reads(Price, price_changed),
    "customer.subscription.created": reads(Subscription, subscription_changed),
    "customer.subscription.updated": reads(Subscription, subscription_changed),
    "customer.subscription.deleted": reads(Subscription, subscription_changed),
    "customer.subscription.paused": reads(Subscription, subscription_changed),
    "customer.subscription.resumed": reads(Subscription, subscription_changed),
    "customer.subscription.trial_will_end": reads(Subscription, subscription_trial_will_end),
    "invoice.paid": reads(Invoice, invoice_paid),
    "invoice.payment_failed": reads(Invoice, invoice_payment_failed),
    "invoice.payment_action_required": reads(Invoice, invoice_payment_action_required),
}
