"""Stripe events that settle refunds: ``refund.*`` (the refund itself) and
``charge.refunded`` (a charge gained a refund, possibly one made in the dashboard)."""

from __future__ import annotations

import logging

from payments_api.refunds.invoice_settlement import InvoiceRefundSettlement
from payments_api.refunds.settlement import RefundSettlement
from payments_api.stripe.objects import Charge, Refund
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent, reads

log = logging.getLogger(__name__)


async def refund_changed(event: StripeEvent, refund: Refund, context: HandlerContext) -> None:
    """refund.created / refund.updated / refund.failed / charge.refund.updated: the
    object is the Refund in its current state; applying it is idempotent. A refund of a
    subscription invoice's charge is settled by the invoice refunds, any other by the
    pay-in refunds."""
    invoice_refunds = InvoiceRefundSettlement(context.session, context.stripe)
    if await invoice_refunds.apply(refund) is None:
        await RefundSettlement(context.session, context.stripe).apply(refund)


async def charge_refunded(event: StripeEvent, charge: Charge, context: HandlerContext) -> None:
    """A charge was (partly) refunded. Since API version 2022-11-15 the charge no longer
    embeds its refunds, so they are listed from Stripe unless the payload has them all."""
    embedded = charge.refunds
    if embedded is not None and not embedded.has_more and embedded.data:
        refunds = embedded.data
    else:
        refunds = await context.stripe.list_refunds(charge=charge.id)
    settlement = RefundSettlement(context.session, context.stripe)
    invoice_refunds = InvoiceRefundSettlement(context.session, context.stripe)
    for refund in refunds:
        if refund.payment_intent is None and charge.payment_intent:
            refund = refund.model_copy(update={"payment_intent": charge.payment_intent})
        if await invoice_refunds.apply(refund) is None:
            await settlement.apply(refund)


HANDLERS: dict[str, EventHandler] = {
    "charge.refunded": reads(Charge, charge_refunded),
    "charge.refund.updated": reads(Refund, refund_changed),
    "refund.created": reads(Refund, refund_changed),
    "refund.updated": reads(Refund, refund_changed),
    "refund.failed": reads(Refund, refund_changed),
}
