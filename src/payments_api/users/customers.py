"""The user's Stripe Customer: every flow that charges or saves a card needs it."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.stripe_operation import call_and_settle
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Customer
from payments_api.users.models import User
from payments_api.users.repository import UserRepository


async def ensure_customer(
    sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway, user: User
) -> str:
    """The user's Stripe Customer, created once (the key makes concurrent first calls
    return the same customer) and stored on the user. Called with no transaction open."""
    if user.stripe_customer_id:
        return user.stripe_customer_id

    async def record(session: AsyncSession, customer: Customer) -> str:
        await session.execute(
            update(User)
            .where(User.id == user.id, User.stripe_customer_id.is_(None))
            .values(stripe_customer_id=customer.id)
        )
        stored = await UserRepository(session).get(user.id)
        assert stored is not None  # noqa: S101 - provisioned before
        user.stripe_customer_id = stored.stripe_customer_id
        return user.stripe_customer_id or customer.id

    return await call_and_settle(
        sessionmaker,
        "customer",
        user.id,
        lambda key: stripe.create_customer(user_id=user.id, email=user.email, idempotency_key=key),
        record,
    )
