from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from payments_api.kit.row_repository import RowRepository
from payments_api.orders.models import DiscountCode, Order, Price


class OrderRepository(RowRepository[Order]):
    model = Order

    async def escrow_funding(self, escrow_id: int, *, for_update: bool = False) -> Order | None:
        """The confirmed card payment of an escrow (purpose ``escrow``), if any."""
        stmt = (
            select(Order)
            .where(
                Order.purpose == "escrow",
                Order.reference["escrow_id"].as_integer() == escrow_id,
                Order.stripe_payment_intent_id.is_not(None),
                Order.status.in_(("succeeded", "partially_refunded", "refunded")),
            )
            .order_by(Order.id)
            .limit(1)
        )
        return await self.one(stmt, for_update=for_update)

    async def get_for_user(self, user_id: str, order_id: int) -> Order | None:
        return await self.one(
            select(Order).where(Order.id == order_id, Order.user_id == user_id), fresh=False
        )

    async def by_idempotency_key(self, user_id: str, key: str) -> Order | None:
        return await self.one(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key),
            fresh=False,
        )

    async def by_stripe_ids(
        self,
        *,
        order_id: int | None,
        checkout_session_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> Order | None:
        """Find the order an event is about, locked: by our id from Stripe metadata first,
        then by the Stripe object ids recorded on it."""
        conditions = []
        if order_id is not None:
            conditions.append(Order.id == order_id)
        if checkout_session_id:
            conditions.append(Order.stripe_checkout_session_id == checkout_session_id)
        if payment_intent_id:
            conditions.append(Order.stripe_payment_intent_id == payment_intent_id)
        return await self.first_locked(conditions)

    async def page(self, user_id: str, *, limit: int, before_id: int | None) -> list[Order]:
        return await self.newest_first(Order.user_id == user_id, limit=limit, before_id=before_id)

    async def page_needing_review(self, *, limit: int, before_id: int | None) -> list[Order]:
        return await self.newest_first(
            Order.status == "needs_review", limit=limit, before_id=before_id
        )


class CatalogRepository(RowRepository[Price]):
    model = Price

    async def active_price(self, lookup_key: str) -> Price | None:
        return await self.one(
            select(Price).where(Price.lookup_key == lookup_key, Price.active.is_(True)),
            fresh=False,
        )

    async def prices(self) -> list[Price]:
        return list((await self.session.scalars(select(Price).order_by(Price.id))).all())

    async def price_by_key(self, lookup_key: str) -> Price | None:
        return await self.one(select(Price).where(Price.lookup_key == lookup_key), fresh=False)

    async def discount_by_code(self, code: str) -> DiscountCode | None:
        return await self.one(select(DiscountCode).where(DiscountCode.code == code), fresh=False)

    async def redeem_discount(self, code: str, now: datetime) -> DiscountCode | None:
        """Take one use of a code atomically; None when unknown, outside its window,
        inactive or used up (the WHERE clause is the whole rule, so two concurrent
        redemptions can never exceed the limit)."""
        result: DiscountCode | None = await self.session.scalar(
            update(DiscountCode)
            .where(
                DiscountCode.code == code,
                DiscountCode.active.is_(True),
                (DiscountCode.valid_from.is_(None)) | (DiscountCode.valid_from <= now),
                (DiscountCode.valid_until.is_(None)) | (DiscountCode.valid_until > now),
                (DiscountCode.max_redemptions.is_(None))
                | (DiscountCode.redemptions < DiscountCode.max_redemptions),
            )
            .values(redemptions=DiscountCode.redemptions + 1)
            .returning(DiscountCode)
        )
        return result
