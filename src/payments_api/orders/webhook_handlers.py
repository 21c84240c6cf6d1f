"""Stripe events that confirm or fail pay-ins. Only these credit a wallet."""

from __future__ import annotations

import logging

from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.models import Order
from payments_api.payment_methods.declines import stable_decline_code
from payments_api.stripe.objects import CheckoutSession, MalformedStripeObject, PaymentIntent
from payments_api.webhooks.registry import (
    EventHandler,
    HandlerContext,
    RetryLater,
    StripeEvent,
    reads,
)

log = logging.getLogger(__name__)


def confirmation_in(context: HandlerContext) -> PayInConfirmation:
    """The pay-in confirmation working in the handler's transaction."""
    return PayInConfirmation(context.session, context.stripe, context.settings)


async def order_of_intent(confirmation: PayInConfirmation, intent: PaymentIntent) -> Order | None:
    """The order a PaymentIntent's event is about; None when it is not one of ours (no
    order id in its metadata: e.g. a payment made elsewhere on the account). One that
    names our order before the order has been found (its row not yet committed) is
    retried later."""
    order = await confirmation.find(intent.metadata, payment_intent_id=intent.id)
    if order is None and intent.metadata.get("order_id"):
        raise RetryLater(f"no order yet for payment intent {intent.id}")
    return order


async def _credit_checkout(
    event: StripeEvent, session: CheckoutSession, context: HandlerContext
) -> None:
    confirmation = confirmation_in(context)
    order = await confirmation.find(
        session.metadata,
        checkout_session_id=session.id,
        payment_intent_id=session.payment_intent,
    )
    if order is None:
        raise RetryLater(f"no order for checkout session {session.id}")
    if session.payment_status != "paid":
        # Completed but not yet paid (delayed methods): async_payment_* will follow.
        log.info("checkout %s completed unpaid; waiting", session.id)
        return
    if session.payment_intent is None:
        raise RetryLater(f"checkout session {session.id} has no payment intent")
    if session.amount_total is None or session.currency is None:
        raise MalformedStripeObject(f"paid checkout session {session.id} without its amount")
    await confirmation.succeed(
        order,
        payment_intent_id=session.payment_intent,
        amount=session.amount_total,
        currency=session.currency,
    )


async def checkout_session_unpaid(
    event: StripeEvent, session: CheckoutSession, context: HandlerContext
) -> None:
    """The session ends without money: its delayed payment failed
    (``async_payment_failed``) or the page timed out (``expired``)."""
    expired = event.type == "checkout.session.expired"
    confirmation = confirmation_in(context)
    order = await confirmation.find(session.metadata, checkout_session_id=session.id)
    if order is None:
        if expired:
            return  # a session we never recorded (created elsewhere): nothing to expire
        raise RetryLater(f"no order for checkout session {session.id}")
    if expired:
        await confirmation.fail(order, "expired", "expired")
    else:
        await confirmation.fail(order, "failed", "async_payment_failed")


async def payment_intent_succeeded(
    event: StripeEvent, intent: PaymentIntent, context: HandlerContext
) -> None:
    confirmation = confirmation_in(context)
    order = await order_of_intent(confirmation, intent)
    if order is None:
        return
    await confirmation.succeed(
        order,
        payment_intent_id=intent.id,
        amount=intent.amount_received or intent.amount,
        currency=intent.currency,
    )
    if intent.latest_charge is not None and order.processing_fee_amount is None:
        await confirmation.record_fee(order, intent.latest_charge)


async def payment_intent_payment_failed(
    event: StripeEvent, intent: PaymentIntent, context: HandlerContext
) -> None:
    confirmation = confirmation_in(context)
    order = await confirmation.find(intent.metadata, payment_intent_id=intent.id)
    if order is None:
        return
    error = intent.last_payment_error
    # Stripe's machine codes only, mapped to the API's stable list; its human text is
    # never stored or shown.
    code = stable_decline_code(error.decline_code or error.code if error else None)
    if code == "authentication_required" and order.off_session:
        # An off-session charge the bank wants the customer for: not a failure yet, the
        # customer finishes it on-session.
        await confirmation.require_action(order, payment_intent_id=intent.id)
        return
    # Not necessarily final (the customer may retry the same PaymentIntent or Checkout
    # page): a later success moves the order from failed to succeeded.
    await confirmation.fail(order, "failed", code)


async def payment_intent_requires_action(
    event: StripeEvent, intent: PaymentIntent, context: HandlerContext
) -> None:
    """3-D Secure is needed: the top-up waits for the customer."""
    confirmation = confirmation_in(context)
    order = await confirmation.find(intent.metadata, payment_intent_id=intent.id)
    if order is None or order.channel != "payment_intent":
        return  # Checkout handles authentication on its own page
    if intent.status != "requires_action":
        return  # an older event: the intent has moved on
    await confirmation.require_action(order, payment_intent_id=intent.id)


HANDLERS: dict[str, EventHandler] = {
    # completed: paid now (cards) or later (delayed methods: async_payment_succeeded).
    "checkout.session.completed": reads(CheckoutSession, _credit_checkout),
    "checkout.session.async_payment_succeeded": reads(CheckoutSession, _credit_checkout),
    "checkout.session.async_payment_failed": reads(CheckoutSession, checkout_session_unpaid),
    "checkout.session.expired": reads(CheckoutSession, checkout_session_unpaid),
    "payment_intent.succeeded": reads(PaymentIntent, payment_intent_succeeded),
    "payment_intent.payment_failed": reads(PaymentIntent, payment_intent_payment_failed),
    "payment_intent.requires_action": reads(PaymentIntent, payment_intent_requires_action),
}
