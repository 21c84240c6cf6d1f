"""Stripe events only a job paid by authorization (``capture_method=manual``) cares
about: the card holds the money, or the authorization ended uncaptured."""

from __future__ import annotations

from payments_api.escrow import capture as escrow_capture
from payments_api.orders.webhook_handlers import confirmation_in, order_of_intent
from payments_api.stripe.objects import PaymentIntent
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent, reads


async def payment_intent_amount_capturable_updated(
    event: StripeEvent, intent: PaymentIntent, context: HandlerContext
) -> None:
    """An escrow paid by authorization: the card holds the money (nothing captured)."""
    confirmation = confirmation_in(context)
    order = await order_of_intent(confirmation, intent)
    if order is not None and escrow_capture.is_manual_escrow_order(order):
        await escrow_capture.apply_authorized(context.session, context.settings, order, intent)


async def payment_intent_canceled(
    event: StripeEvent, intent: PaymentIntent, context: HandlerContext
) -> None:
    """An escrow's authorization ended uncaptured: released by us, or expired."""
    confirmation = confirmation_in(context)
    order = await confirmation.find(intent.metadata, payment_intent_id=intent.id)
    if order is None or not escrow_capture.is_manual_escrow_order(order):
        # Other pay-ins end through their own events (checkout.session.expired, a
        # failure): a cancelled PaymentIntent adds nothing to those.
        return
    await escrow_capture.apply_canceled(confirmation, order, intent)


HANDLERS: dict[str, EventHandler] = {
    "payment_intent.amount_capturable_updated": reads(
        PaymentIntent, payment_intent_amount_capturable_updated
    ),
    "payment_intent.canceled": reads(PaymentIntent, payment_intent_canceled),
}
