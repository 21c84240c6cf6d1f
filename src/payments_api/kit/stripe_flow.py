"""The base of the services that call Stripe between short transactions of their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from payments_api.kit.clock import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from payments_api.settings import Settings
    from payments_api.stripe.gateway import StripeGateway


class StripeFlow:
    """Holds a sessionmaker, never a session: no transaction stays open across a Stripe
    call, so each step opens its own (STYLE.md, Transactions). ``now`` is the clock,
    replaced in tests."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.now = now
