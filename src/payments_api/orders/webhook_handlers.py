"""Stripe events that confirm or fail pay-ins. Only these credit a wallet."""

from __future__ import annotations

import logging
from typing import Any

from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.models import Order
from payments_api.payment_methods.declines import stable_decline_code
from payments_api.stripe.refs import stripe_id
from payments_api.webhooks.registry import EventHandler, HandlerContext, RetryLater, StripeEvent

log = logging.getLogger(__name__)


async def order_of_intent(confirmation: PayInConfirmation, intent: dict[str, Any]) -> Order | None:
    """The order a PaymentIntent's event is about; None when it is not one of ours (no
    order id in its metadata: e.g. a payment made elsewhere on the account). One that
    names our order before the order has been found (its row not yet committed) is
    retried later."""
    order = await confirmation.find(intent.get("metadata"), payment_intent_id=intent.get("id"))
    if order is None and (intent.get("metadata") or {}).get("order_id"):
        raise RetryLater(f"no order yet for payment intent {intent.get('id')}")
    return order


async def _credit_checkout(event: StripeEvent, context: HandlerContext) -> None:
    session = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await confirmation.find(
        session.get("metadata"),
        checkout_session_id=session.get("id"),
        payment_intent_id=stripe_id(session.get("payment_intent")),
    )
    if order is None:
        raise RetryLater(f"no order for checkout session {session.get('id')}")
    if session.get("payment_status") != "paid":
        # Completed but not yet paid (delayed methods): async_payment_* will follow.
        log.info("checkout %s completed unpaid; waiting", session.get("id"))
        return
    payment_intent = stripe_id(session.get("payment_intent"))
    if payment_intent is None:
        raise RetryLater(f"checkout session {session.get('id')} has no payment intent")
    await confirmation.succeed(
        order,
        payment_intent_id=payment_intent,
        amount=int(session["amount_total"]),
        currency=str(session["currency"]),
    )


async def checkout_session_completed(event: StripeEvent, context: HandlerContext) -> None:
    await _credit_checkout(event, context)


async def checkout_session_async_payment_succeeded(
    event: StripeEvent, context: HandlerContext
) -> None:
    await _credit_checkout(event, context)


async def checkout_session_async_payment_failed(
    event: StripeEvent, context: HandlerContext
) -> None:
    session = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await confirmation.find(session.get("metadata"), checkout_session_id=session.get("id"))
    if order is None:
        raise RetryLater(f"no order for checkout session {session.get('id')}")
    await confirmation.fail(order, "failed", "async_payment_failed")


async def checkout_session_expired(event: StripeEvent, context: HandlerContext) -> None:
    session = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await confirmation.find(session.get("metadata"), checkout_session_id=session.get("id"))
    if order is None:
        return  # a session we never recorded (created elsewhere): nothing to expire
    await confirmation.fail(order, "expired", "expired")


async def payment_intent_succeeded(event: StripeEvent, context: HandlerContext) -> None:
    intent = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await order_of_intent(confirmation, intent)
    if order is None:
        return
    await confirmation.succeed(
        order,
        payment_intent_id=str(intent["id"]),
        amount=int(intent.get("amount_received") or intent["amount"]),
        currency=str(intent["currency"]),
    )
    charge = stripe_id(intent.get("latest_charge"))
    if charge is not None and order.processing_fee_amount is None:
        await confirmation.record_fee(order, charge)


async def payment_intent_payment_failed(event: StripeEvent, context: HandlerContext) -> None:
    intent = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await confirmation.find(intent.get("metadata"), payment_intent_id=intent.get("id"))
    if order is None:
        return
    error = intent.get("last_payment_error") or {}
    # Stripe's machine codes only, mapped to the API's stable list; its human text is
    # never stored or shown.
    code = stable_decline_code(error.get("decline_code") or error.get("code"))
    if code == "authentication_required" and order.off_session:
        # An off-session charge the bank wants the customer for: not a failure yet, the
        # customer finishes it on-session.
        await confirmation.require_action(order, payment_intent_id=str(intent["id"]))
        return
    # Not necessarily final (the customer may retry the same PaymentIntent or Checkout
    # page): a later success moves the order from failed to succeeded.
    await confirmation.fail(order, "failed", code)


async def payment_intent_requires_action(event: StripeEvent, context: HandlerContext) -> None:
    """3-D Secure is needed: the top-up waits for the customer."""
    intent = event.data_object
    confirmation = PayInConfirmation(context.session, context.stripe, context.settings)
    order = await confirmation.find(intent.get("metadata"), payment_intent_id=intent.get("id"))
    if order is None or order.channel != "payment_intent":
        return  # Checkout handles authentication on its own page
    if intent.get("status") != "requires_action":
        return  # an older event: the intent has moved on
    await confirmation.require_action(order, payment_intent_id=str(intent["id"]))


HANDLERS: dict[str, EventHandler] = {
    "checkout.session.completed": checkout_session_completed,
    "checkout.session.async_payment_succeeded": checkout_session_async_payment_succeeded,
    "checkout.session.async_payment_failed": checkout_session_async_payment_failed,
    "checkout.session.expired": checkout_session_expired,
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_payment_failed,
    "payment_intent.requires_action": payment_intent_requires_action,
}
