"""Refunds that are no refund: the release of an authorization Stripe never captured.

Before API version 2025-03-31.basil, Stripe recorded the uncaptured rest of a partially
captured charge (and the whole of a cancelled or expired authorization) as a Refund and
sent ``charge.refunded`` for it. Since then (Stripe's changelog: "Partially capturing or
canceling payments no longer creates a Refund") it does neither, and this service pins a
later version. But an event rendered in an older version (an endpoint pinned to one, a
resent old event) would still carry such a Refund, and recording it as a dashboard refund
would pay back money that was never taken: the escrow already counts only what was
captured. So a Refund Stripe made for an uncaptured authorization is not recorded.
"""

from __future__ import annotations

from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Refund


async def releases_an_authorization(stripe_refund: Refund, stripe: StripeGateway) -> bool:
    """Whether ``stripe_refund`` (one this service did not make, of an order paid by
    authorization: only those are asked, so other refunds cost no extra call) only
    released an authorization: any Refund of a charge never captured, or, on a partially captured
    charge, its first Refund when that is exactly the uncaptured rest (the release is
    made at capture time, before any refund of captured money can exist)."""
    if stripe_refund.charge is None:
        return False
    charge = await stripe.retrieve_charge(stripe_refund.charge)
    if not charge.captured:
        return True
    if charge.amount_captured >= charge.amount:
        return False
    if stripe_refund.amount != charge.amount - charge.amount_captured:
        return False
    refunds = await stripe.list_refunds(charge=stripe_refund.charge)
    first = min(refunds, key=lambda r: (r.created, r.id), default=None)
    return first is not None and first.id == stripe_refund.id
