"""Read models of subscriptions and invoices (plans joined, entitlement derived) and
the subscriber's and admin's reads.

``entitled`` is derived, never stored: trialing or active, or past_due for at most
``PAYMENTS_SUBSCRIPTIONS_PAST_DUE_GRACE_HOURS`` since it became past_due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.clock import utcnow
from payments_api.kit.lookups import by_public_id
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.kit.reads import read_of
from payments_api.settings import Settings
from payments_api.subscriptions.errors import SubscriptionNotFound
from payments_api.subscriptions.models import Subscription, SubscriptionInvoice
from payments_api.subscriptions.plans import plan_read
from payments_api.subscriptions.repository import PlanRepository, SubscriptionRepository
from payments_api.subscriptions.schemas import (
    InvoiceRead,
    PauseCollection,
    PlanRead,
    SubscriptionList,
    SubscriptionRead,
    UnclaimedSubscriptionList,
    UnclaimedSubscriptionRead,
)
from payments_api.users.models import User

SUBSCRIPTION_PREFIX = "subs"


def is_entitled(subscription: Subscription, *, now: datetime, grace_hours: int) -> bool:
    if subscription.pause_behavior is not None:
        return False  # collection paused: the subscriber is not paying, so not entitled
    if subscription.status in ("trialing", "active"):
        return True
    if subscription.status == "past_due":
        since = subscription.past_due_since or now
        return now < since + timedelta(hours=grace_hours)
    return False


class SubscriptionViews:
    """Read models of subscriptions and invoices (plans joined, entitlement derived)."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.plans = PlanRepository(session)

    async def plans_of(self, rows: list[Subscription]) -> dict[str, PlanRead]:
        ids = sorted({row.stripe_price_id for row in rows})
        if not ids:
            return {}
        found = await self.plans.plans(active_only=False, price_ids=ids)
        return {price.stripe_price_id: plan_read(price, product) for price, product in found}

    def read(self, row: Subscription, plan: PlanRead | None) -> SubscriptionRead:
        return read_of(
            SubscriptionRead,
            row,
            id=public_id(SUBSCRIPTION_PREFIX, row.id),
            entitled=is_entitled(
                row, now=utcnow(), grace_hours=self.settings.subscriptions_past_due_grace_hours
            ),
            plan=plan,
            pause_collection=PauseCollection(
                behavior=row.pause_behavior,
                resumes_at=row.pause_resumes_at,
            )
            if row.pause_behavior is not None
            else None,
            origin="stripe" if row.origin == "stripe" else "api",
        )

    async def one(self, row: Subscription) -> SubscriptionRead:
        return self.read(row, (await self.plans_of([row])).get(row.stripe_price_id))

    @staticmethod
    def invoice(row: SubscriptionInvoice) -> InvoiceRead:
        return read_of(
            InvoiceRead,
            row,
            id=row.stripe_invoice_id,
            subscription_id=public_id(SUBSCRIPTION_PREFIX, row.subscription_id),
        )


class SubscriptionQueries:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repository = SubscriptionRepository(session)
        self.views = SubscriptionViews(session, settings)

    async def list(self, user: User, *, limit: int, starting_after: str | None) -> SubscriptionList:
        rows = await self.repository.page(
            user.id,
            limit=limit + 1,
            before_id=parse_cursor(SUBSCRIPTION_PREFIX, starting_after),
        )
        page = rows[:limit]
        plans = await self.views.plans_of(page)
        return SubscriptionList(
            data=[self.views.read(row, plans.get(row.stripe_price_id)) for row in page],
            has_more=len(rows) > limit,
        )

    async def get(self, user: User, subscription_id: str) -> SubscriptionRead:
        row = await by_public_id(
            SUBSCRIPTION_PREFIX,
            subscription_id,
            lambda number: self.repository.get_for_user(user.id, number),
            SubscriptionNotFound,
        )
        return await self.views.one(row)


async def unclaimed_subscriptions(
    session: AsyncSession, *, limit: int
) -> UnclaimedSubscriptionList:
    """Subscriptions of Stripe customers we do not know, newest first (admin review)."""
    rows = await SubscriptionRepository(session).unclaimed(limit=limit)
    return UnclaimedSubscriptionList(
        data=[read_of(UnclaimedSubscriptionRead, row, first_seen_at=row.created_at) for row in rows]
    )
