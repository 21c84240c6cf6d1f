"""The base of the services a customer calls for themselves (pay-ins, subscriptions):
a :class:`~payments_api.kit.stripe_flow.StripeFlow` that knows its caller."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from payments_api.auth import Principal
from payments_api.kit.clock import utcnow
from payments_api.kit.stripe_flow import StripeFlow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from payments_api.settings import Settings
    from payments_api.stripe.gateway import StripeGateway


class CallerStripeFlow(StripeFlow):
    """Holds the caller's ``principal`` besides what every Stripe flow holds."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        principal: Principal,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(sessionmaker, stripe, settings, now=now)
        self.principal = principal
