"""The sandbox's Stripe: the objects, the rules Stripe enforces, and the events it emits.

``SandboxStripe`` is the top of a stack of layers, one module per Stripe resource, each
using only the layers below it (see ``core.py``): accounts, transfers and payouts,
disputes, what a card does to a PaymentIntent, the PaymentIntent API, refunds, Checkout
Sessions. Billing (``billing.py``) and saved cards (``saved_cards.py``) work on an
instance of it. Callers import from here.
"""

from __future__ import annotations

from payments_sandbox import objects
from payments_sandbox.checkout import CheckoutSessions
from payments_sandbox.core import CONFIRMABLE, Card, PageError
from payments_sandbox.payment_intents import TEST_PAYMENT_METHODS

__all__ = ["CONFIRMABLE", "TEST_PAYMENT_METHODS", "Card", "PageError", "SandboxStripe"]


class SandboxStripe(CheckoutSessions):
    """Every Stripe resource the sandbox serves, on one request's transaction."""

    async def expire_due_sessions(self, limit: int = 100) -> int:
        """Open Checkout Sessions past ``expires_at`` expire, as Stripe expires them."""
        due = await self.objects.expired_sessions(objects.now(), limit)
        for session_id in due:
            await self.expire_checkout_session(session_id)
        return len(due)
