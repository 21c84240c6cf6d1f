"""Telling the apps about a subscription invoice: every invoice event carries the
invoice as the subscriber reads it, under a change key of the invoice and its step."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.subscriptions.models import SubscriptionInvoice
from payments_api.subscriptions.views import SubscriptionViews


async def tell_subscriber(
    session: AsyncSession, type: EventType, invoice: SubscriptionInvoice, step: str
) -> None:
    """``invoice`` as the event ``type`` for its subscriber, once per change key
    ``invoice:<Stripe's invoice id>:<step>`` (a step naming an attempt or a refund is
    told once per attempt or refund)."""
    await emit(
        session,
        type,
        SubscriptionViews.invoice(invoice),
        change_key=f"invoice:{invoice.stripe_invoice_id}:{step}",
        user_ids=[invoice.user_id],
    )
