"""Stripe events about card disputes (see disputes/service.py for what each one moves)."""

from __future__ import annotations

from payments_api.disputes.service import DisputeSettlement
from payments_api.webhooks.registry import EventHandler, HandlerContext, StripeEvent


async def dispute_changed(event: StripeEvent, context: HandlerContext) -> None:
    """Every ``charge.dispute.*`` event carries the dispute as it is now; applying it
    converges our state and the ledger to it (illegal or stale ones change nothing)."""
    await DisputeSettlement(context.session, context.stripe).apply(event)


HANDLERS: dict[str, EventHandler] = {
    "charge.dispute.created": dispute_changed,
    "charge.dispute.updated": dispute_changed,
    "charge.dispute.closed": dispute_changed,
    "charge.dispute.funds_withdrawn": dispute_changed,
    "charge.dispute.funds_reinstated": dispute_changed,
}
