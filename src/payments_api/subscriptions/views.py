"""Read models of subscriptions and invoices (plans joined, entitlement derived) and
the subscriber's and admin's reads.

``entitled`` is derived, never stored: trialing or active, or past_due for at most
``PAYMENTS_SUBSCRIPTIONS_PAST_DUE_GRACE_HOURS`` since it became past_due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.settings import Settings
from payments_api.subscriptions.errors import (
    SubscriptionNotFound,
)
from payments_api.subscriptions.models import Subscription, SubscriptionInvoice
from payments_api.subscriptions.plans import plan_read
from payments_api.subscriptions.repository import (
    PlanRepository,
    SubscriptionRepository,
)
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
        return SubscriptionRead(
            id=public_id(SUBSCRIPTION_PREFIX, row.id),
            status=row.status,
            entitled=is_entitled(
                row, now=utcnow(), grace_hours=self.settings.subscriptions_past_due_grace_hours
            ),
            plan=plan,
            cancel_at_period_end=row.cancel_at_period_end,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            trial_end=row.trial_end,
            past_due_since=row.past_due_since,
            pause_collection=PauseCollection(
                behavior=row.pause_behavior,
                resumes_at=row.pause_resumes_at,
            )
            if row.pause_behavior is not None
            else None,
            origin="stripe" if row.origin == "stripe" else "api",
            canceled_at=row.canceled_at,
            ended_at=row.ended_at,
            stripe_subscription_id=row.stripe_subscription_id,
            created_at=row.created_at,
        )

    async def one(self, row: Subscription) -> SubscriptionRead:
        return self.read(row, (await self.plans_of([row])).get(row.stripe_price_id))

    @staticmethod
    def invoice(row: SubscriptionInvoice) -> InvoiceRead:
        return InvoiceRead(
            id=row.stripe_invoice_id,
            subscription_id=public_id(SUBSCRIPTION_PREFIX, row.subscription_id),
            status=row.status,
            billing_reason=row.billing_reason,
            amount_due=row.amount_due,
            amount_paid=row.amount_paid,
            currency=row.currency,
            attempt_count=row.attempt_count,
            period_start=row.period_start,
            period_end=row.period_end,
            hosted_invoice_url=row.hosted_invoice_url,
            paid_at=row.paid_at,
            credited_amount=row.credited_amount,
            refunded_amount=row.refunded_amount,
            credit_reversed=row.credit_reversed,
            tax_amount=row.tax_amount,
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
        number = parse_public_id(SUBSCRIPTION_PREFIX, subscription_id)
        row = await self.repository.get_for_user(user.id, number) if number else None
        if row is None:
            raise SubscriptionNotFound()
        return await self.views.one(row)


async def unclaimed_subscriptions(
    session: AsyncSession, *, limit: int
) -> UnclaimedSubscriptionList:
    """Subscriptions of Stripe customers we do not know, newest first (admin review)."""
    rows = await SubscriptionRepository(session).unclaimed(limit=limit)
    return UnclaimedSubscriptionList(
        data=[
            UnclaimedSubscriptionRead(
                stripe_subscription_id=row.stripe_subscription_id,
                stripe_customer_id=row.stripe_customer_id,
                status=row.status,
                stripe_price_id=row.stripe_price_id,
                last_event_type=row.last_event_type,
                first_seen_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]
    )
