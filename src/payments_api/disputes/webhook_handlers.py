"""Stripe events about card disputes (see disputes/service.py for what each one moves)."""

from __future__ import annotations

from payments_api.disputes.service import DisputeSettlement
from payments_api.stripe.objects import Dispute
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent, reads


async def dispute_changed(event: StripeEvent, dispute: Dispute, context: HandlerContext) -> None:
    """Every ``charge.dispute.*`` event carries the dispute as it is now; applying it
    converges our state and the ledger to it (illegal or stale ones change nothing)."""
    await DisputeSettlement(context.session, context.stripe).apply(event, dispute)


HANDLERS: dict[str, EventHandler] = {
    "charge.dispute.created": reads(Dispute, dispute_changed),
    "charge.dispute.updated": reads(Dispute, dispute_changed),
    "charge.dispute.closed": reads(Dispute, dispute_changed),
    "charge.dispute.funds_withdrawn": reads(Dispute, dispute_changed),
    "charge.dispute.funds_reinstated": reads(Dispute, dispute_changed),
}
