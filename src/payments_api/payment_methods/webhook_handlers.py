"""``setup_intent.succeeded``: Stripe's word that a card is saved (never the client's)."""

from __future__ import annotations

from payments_api.payment_methods.service import record_saved_card
from payments_api.stripe.objects import SetupIntent
from payments_api.users.repository import UserRepository
from payments_api.webhooks.registry import (
    EventHandler,
    HandlerContext,
    RetryLater,
    StripeEvent,
    reads,
)


async def setup_intent_succeeded(
    event: StripeEvent, intent: SetupIntent, context: HandlerContext
) -> None:
    customer, payment_method = intent.customer, intent.payment_method
    user_id = intent.metadata.get("user_id")
    if user_id is None or customer is None or payment_method is None:
        return  # not one of ours (made elsewhere on the account)
    user = await UserRepository(context.session).get(user_id)
    if user is None:
        raise RetryLater(f"no user for setup intent {intent.id}")
    if user.stripe_customer_id != customer:
        # The metadata names a user whose customer is another: never attach a card to
        # the wrong person.
        return
    method = await context.stripe.retrieve_payment_method(payment_method)
    if method.customer not in (None, customer):
        return  # moved to another customer since: not this user's card
    await record_saved_card(context.session, context.stripe, user, method)


HANDLERS: dict[str, EventHandler] = {
    "setup_intent.succeeded": reads(SetupIntent, setup_intent_succeeded),
}
