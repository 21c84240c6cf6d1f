from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row
from payments_api.kit.row_repository import RowRepository
from payments_api.subscriptions.models import (
    PlanPrice,
    PlanProduct,
    Subscription,
    SubscriptionInvoice,
    UnclaimedSubscription,
)
from payments_api.users.models import User

# Statuses that hold a place in a plan family (one per customer per family).
LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid", "paused")


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_product(self, values: dict[str, Any]) -> bool:
        """Write a product unless a newer state of it is stored; True when written."""
        return await self._upsert_newer(
            cast(Table, PlanProduct.__table__), "stripe_product_id", values
        )

    async def upsert_price(self, values: dict[str, Any]) -> bool:
        """Write a price unless a newer state of it is stored; True when written."""
        return await self._upsert_newer(cast(Table, PlanPrice.__table__), "stripe_price_id", values)

    async def _upsert_newer(self, table: Table, key: str, values: dict[str, Any]) -> bool:
        """Insert ``values`` (column names), or update the row with the same ``key`` unless
        it holds a newer Stripe state (``stripe_state_at``)."""
        stmt = insert(table).values(**values)
        update: dict[str, Any] = {k: stmt.excluded[k] for k in values if k != key}
        update["updated_at"] = func.now()
        upsert = stmt.on_conflict_do_update(
            index_elements=[key],
            set_=update,
            where=table.c.stripe_state_at <= stmt.excluded.stripe_state_at,
        ).returning(table.c[key])
        return (await self.session.execute(upsert)).first() is not None

    async def product(self, product_id: str) -> PlanProduct | None:
        result: PlanProduct | None = await self.session.get(
            PlanProduct, product_id, populate_existing=True
        )
        return result

    async def plan(self, price_id: str) -> tuple[PlanPrice, PlanProduct] | None:
        row = (
            await self.session.execute(
                select(PlanPrice, PlanProduct)
                .join(PlanProduct, PlanProduct.stripe_product_id == PlanPrice.stripe_product_id)
                .where(PlanPrice.stripe_price_id == price_id)
                .execution_options(populate_existing=True)
            )
        ).first()
        return (row[0], row[1]) if row is not None else None

    async def plans(
        self, *, active_only: bool, price_ids: Sequence[str] | None = None
    ) -> list[tuple[PlanPrice, PlanProduct]]:
        stmt = select(PlanPrice, PlanProduct).join(
            PlanProduct, PlanProduct.stripe_product_id == PlanPrice.stripe_product_id
        )
        if active_only:
            stmt = stmt.where(PlanPrice.active, PlanProduct.active)
        if price_ids is not None:
            stmt = stmt.where(PlanPrice.stripe_price_id.in_(list(price_ids)))
        stmt = stmt.order_by(PlanProduct.name, PlanPrice.unit_amount, PlanPrice.stripe_price_id)
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]


class SubscriptionRepository(RowRepository[Subscription]):
    model = Subscription

    async def lock_user(self, user_id: str) -> None:
        """Serialize a user's subscribe requests (the one-per-family check)."""
        await self.session.execute(select(User.id).where(User.id == user_id).with_for_update())

    async def get_for_user(self, user_id: str, subscription_id: int) -> Subscription | None:
        return await self.one(
            select(Subscription).where(
                Subscription.id == subscription_id, Subscription.user_id == user_id
            )
        )

    async def by_idempotency_key(self, user_id: str, key: str) -> Subscription | None:
        result: Subscription | None = await self.session.scalar(
            select(Subscription).where(
                Subscription.user_id == user_id, Subscription.idempotency_key == key
            )
        )
        return result

    async def find_locked(
        self, *, subscription_id: int | None, stripe_subscription_id: str | None
    ) -> Subscription | None:
        """The subscription an event is about, locked: by Stripe's id, then by our id
        from the object's metadata."""
        conditions = []
        if stripe_subscription_id:
            conditions.append(Subscription.stripe_subscription_id == stripe_subscription_id)
        if subscription_id is not None:
            conditions.append(Subscription.id == subscription_id)
        return await self.first_locked(conditions)

    async def user_by_customer(self, customer_id: str) -> User | None:
        result: User | None = await self.session.scalar(
            select(User).where(User.stripe_customer_id == customer_id).limit(1)
        )
        return result

    async def adopt(self, values: dict[str, Any]) -> Subscription | None:
        """Write the row of a subscription made elsewhere (once, however many events
        race), and return it locked."""
        await self.session.execute(
            insert(Subscription)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
        )
        return await self.one(
            select(Subscription).where(
                Subscription.user_id == values["user_id"],
                Subscription.idempotency_key == values["idempotency_key"],
            ),
            for_update=True,
        )

    async def record_unclaimed(self, values: dict[str, Any]) -> None:
        """Keep (or bring up to date) a subscription of a customer we do not know."""
        stmt = insert(UnclaimedSubscription).values(**values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["stripe_subscription_id"],
                set_={
                    "status": stmt.excluded.status,
                    "stripe_customer_id": stmt.excluded.stripe_customer_id,
                    "stripe_price_id": stmt.excluded.stripe_price_id,
                    "last_event_type": stmt.excluded.last_event_type,
                    "stripe_state_at": stmt.excluded.stripe_state_at,
                    "updated_at": func.now(),
                },
                where=UnclaimedSubscription.stripe_state_at <= stmt.excluded.stripe_state_at,
            )
        )

    async def unclaimed(self, *, limit: int) -> list[UnclaimedSubscription]:
        rows = await self.session.scalars(
            select(UnclaimedSubscription)
            .order_by(UnclaimedSubscription.created_at.desc())
            .limit(limit)
        )
        return list(rows)

    async def live_in_family(self, user_id: str, family: str, *, now: datetime) -> int:
        """Subscriptions holding the family's place: live at Stripe, or being created
        (incomplete, which Stripe expires after 23 hours)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(
                Subscription.user_id == user_id,
                Subscription.family == family,
                or_(
                    Subscription.status.in_(LIVE_STATUSES),
                    (Subscription.status == "incomplete")
                    & (Subscription.created_at > now - timedelta(hours=24)),
                ),
            )
        )
        return int(count or 0)

    async def page(self, user_id: str, *, limit: int, before_id: int | None) -> list[Subscription]:
        return await self.newest_first(
            Subscription.user_id == user_id, limit=limit, before_id=before_id
        )


class InvoiceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_stripe_id(
        self, invoice_id: str, *, for_update: bool = True
    ) -> SubscriptionInvoice | None:
        return await fresh_row(
            self.session,
            SubscriptionInvoice,
            SubscriptionInvoice.stripe_invoice_id == invoice_id,
            for_update=for_update,
        )

    async def by_payment(
        self, *, payment_intent: str | None, charge: str | None
    ) -> SubscriptionInvoice | None:
        """The invoice a PaymentIntent or charge paid (ids kept since invoices are paid
        through them, or backfilled for older ones)."""
        conditions = []
        if payment_intent:
            conditions.append(SubscriptionInvoice.stripe_payment_intent_id == payment_intent)
        if charge:
            conditions.append(SubscriptionInvoice.stripe_charge_id == charge)
        if not conditions:
            return None
        result: SubscriptionInvoice | None = await self.session.scalar(
            select(SubscriptionInvoice)
            .where(or_(*conditions))
            .order_by(SubscriptionInvoice.id)
            .limit(1)
        )
        return result

    async def missing_payment_ids(self, *, after_id: int, limit: int) -> list[tuple[int, str]]:
        """Paid invoices (of some money) whose PaymentIntent or charge is not known, after
        ``after_id`` in id order: (row id, Stripe invoice id)."""
        rows = await self.session.execute(
            select(SubscriptionInvoice.id, SubscriptionInvoice.stripe_invoice_id)
            .where(
                SubscriptionInvoice.status == "paid",
                SubscriptionInvoice.amount_paid > 0,
                or_(
                    SubscriptionInvoice.stripe_payment_intent_id.is_(None),
                    SubscriptionInvoice.stripe_charge_id.is_(None),
                ),
                SubscriptionInvoice.id > after_id,
            )
            .order_by(SubscriptionInvoice.id)
            .limit(limit)
        )
        return [(int(row.id), str(row.stripe_invoice_id)) for row in rows]

    async def get_locked(self, invoice_id: int) -> SubscriptionInvoice | None:
        return await fresh_row(
            self.session, SubscriptionInvoice, SubscriptionInvoice.id == invoice_id, for_update=True
        )

    async def add(self, invoice: SubscriptionInvoice) -> SubscriptionInvoice:
        self.session.add(invoice)
        await self.session.flush()
        return invoice

    async def for_subscription(self, subscription_id: int) -> list[SubscriptionInvoice]:
        rows = await self.session.scalars(
            select(SubscriptionInvoice)
            .where(SubscriptionInvoice.subscription_id == subscription_id)
            .order_by(SubscriptionInvoice.id)
        )
        return list(rows)
