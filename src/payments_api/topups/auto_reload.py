"""Auto-reload charges (the ``auto_reload.charge`` job): a top-up of the user's saved
card, charged off-session when their balance fell below their threshold
(``payment_methods/auto_reload.py`` decides when and writes the pending order)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.models import Order
from payments_api.orders.repository import OrderRepository
from payments_api.orders.service import PayInService
from payments_api.payment_methods.errors import PaymentMethodNotFound
from payments_api.settings import Settings
from payments_api.stripe.errors import CardDeclined
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.customers import ensure_customer
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)


async def charge_auto_reload(
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    settings: Settings,
    order_id: int,
) -> None:
    """The ``auto_reload.charge`` job: charge an auto-reload order's card off-session
    (no transaction open across the call; the key makes a retried job reach the same
    PaymentIntent). A decline fails the order; Stripe's event credits a success."""
    async with sessionmaker() as session:
        order = await session.get(Order, order_id)
        user = await UserRepository(session).get(order.user_id) if order else None
    if order is None or user is None or order.status != "pending":
        return
    customer_id = await ensure_customer(sessionmaker, stripe, user)
    params: dict[str, Any] = {
        "amount": order.amount,
        "currency": order.currency,
        "customer": customer_id,
        "metadata": {
            "order_id": str(order.id),
            "user_id": user.id,
            "purpose": "topup",
            "auto_reload": "true",
        },
    }
    service = PayInService(
        sessionmaker, stripe, settings, Principal(sub=user.id, roles=frozenset(), email=None)
    )
    try:
        await service.confirm_with_saved_card(order, params)
    except CardDeclined:
        log.info("auto-reload declined", extra={"order_id": order.id})
    except PaymentMethodNotFound:
        async with sessionmaker.begin() as session:
            stored = await OrderRepository(session).get(order.id, for_update=True)
            assert stored is not None  # noqa: S101
            await PayInConfirmation(session, stripe, settings).fail(
                stored, "failed", "payment_method_not_found"
            )
