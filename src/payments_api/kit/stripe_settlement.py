"""The base of the code that applies Stripe's word (an API answer, an event's object) in
its caller's transaction: refunds' and disputes' settlements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from payments_api.kit.clock import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from payments_api.stripe.gateway import StripeGateway


class StripeSettlement:
    """Holds the caller's session (the caller owns the transaction), the gateway (to
    read what an event leaves out) and the clock (``now``, replaced in tests)."""

    def __init__(
        self, session: AsyncSession, stripe: StripeGateway, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.session = session
        self.stripe = stripe
        self.now = now
