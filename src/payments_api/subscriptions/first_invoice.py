"""Paying a new subscription's first invoice server-side with a saved card.

Under ``payment_behavior=default_incomplete`` Stripe creates the subscription
``incomplete`` with its first invoice open, saved card or not, and waits for the
invoice's PaymentIntent to be confirmed. When the customer named a card, or has a
default one saved with us, the service pays that invoice itself (``POST
/v1/invoices/{id}/pay``, the customer present): a card that needs no authentication is
charged at once and the subscription is active (Stripe's webhooks then book it as
always). When the card needs authentication (or is declined) the invoice stays open and
the answer carries its client secret as before, for the customer to confirm.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payment_methods.repository import PaymentMethodRepository
from payments_api.stripe.billing_objects import Invoice, Subscription
from payments_api.stripe.errors import CardDeclined
from payments_api.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)


def open_first_invoice(obj: Subscription) -> str | None:
    """The id of the subscription's first invoice while it waits for a payment."""
    invoice = obj.latest_invoice
    if obj.status != "incomplete" or not isinstance(invoice, Invoice):
        return None
    if invoice.status != "open" or invoice.amount_due <= 0:
        return None
    return invoice.id


async def saved_card(session: AsyncSession, user_id: str) -> str | None:
    """The customer's default saved card, if any."""
    method = await PaymentMethodRepository(session).default_for(user_id)
    if method is None or method.status != "active":
        return None
    return method.stripe_payment_method_id


async def pay_first_invoice(
    stripe: StripeGateway,
    obj: Subscription,
    *,
    payment_method: str | None,
    idempotency_key: str,
) -> Subscription:
    """Stripe's subscription after trying to pay its first invoice (``obj`` unchanged
    when there was nothing to pay, nothing to pay with, or the customer must act)."""
    invoice_id = open_first_invoice(obj)
    if invoice_id is None or payment_method is None:
        return obj
    try:
        paid = await stripe.pay_invoice(
            invoice_id, payment_method=payment_method, idempotency_key=idempotency_key
        )
    except CardDeclined:
        # The customer may still confirm the PaymentIntent with another card.
        log.info("first invoice declined", extra={"invoice": invoice_id})
        return obj
    if paid is None or paid.status != "paid":
        return obj
    return await stripe.retrieve_subscription(obj.id)
