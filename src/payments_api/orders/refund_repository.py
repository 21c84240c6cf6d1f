from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from payments_api.kit.row_repository import RowRepository
from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund, WalletRefund

IN_FLIGHT = ("pending", "requires_action")


class RefundRepository(RowRepository[Refund]):
    model = Refund

    async def by_stripe_id(self, stripe_refund_id: str) -> Refund | None:
        return await self.one(
            select(Refund).where(Refund.stripe_refund_id == stripe_refund_id), fresh=False
        )

    async def by_idempotency_key(self, actor_id: str, key: str) -> Refund | None:
        return await self.one(
            select(Refund).where(Refund.requested_by == actor_id, Refund.idempotency_key == key)
        )

    async def in_flight_amount(self, order_id: int) -> int:
        """Minor units of the order's refunds Stripe has not settled yet."""
        total = await self.session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.order_id == order_id, Refund.status.in_(IN_FLIGHT)
            )
        )
        return int(total or 0)

    async def reversed_amount(self, order_id: int) -> int:
        """What refunds of a completed escrow's payment reversed of its settlement so
        far (whatever became of the card refund: a failed one left the money in the
        customer's wallet)."""
        total = await self.session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.order_id == order_id, Refund.payee_share + Refund.fee_share > 0
            )
        )
        return int(total or 0)

    async def insert_from_stripe(self, values: dict[str, Any]) -> None:
        """Record a refund made outside the API; a concurrent twin inserts nothing."""
        await self.session.execute(
            insert(Refund)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Refund.stripe_refund_id])
        )

    async def page(
        self,
        *,
        limit: int,
        before_id: int | None,
        order_id: int | None,
        status: str | None,
    ) -> list[Refund]:
        conditions = []
        if order_id is not None:
            conditions.append(Refund.order_id == order_id)
        if status is not None:
            conditions.append(Refund.status == status)
        return await self.newest_first(*conditions, limit=limit, before_id=before_id)

    async def stuck(self, older_than: datetime, limit: int) -> list[int]:
        """Refunds we asked for (admin refunds, cash-out parts) never confirmed as created
        at Stripe (crash or timeout)."""
        rows = await self.session.scalars(
            select(Refund.id)
            .where(
                Refund.status == "pending",
                Refund.origin.in_(("admin", "wallet")),
                Refund.stripe_refund_id.is_(None),
                Refund.updated_at < older_than,
            )
            .order_by(Refund.id)
            .limit(limit)
        )
        return list(rows.all())


class WalletRefundRepository(RowRepository[WalletRefund]):
    model = WalletRefund

    async def get(
        self, row_id: int, *, user_id: str | None = None, for_update: bool = False
    ) -> WalletRefund | None:
        """The cash-out ``row_id``; with ``user_id``, only when it is that user's."""
        stmt = select(WalletRefund).where(WalletRefund.id == row_id)
        if user_id is not None:
            stmt = stmt.where(WalletRefund.user_id == user_id)
        return await self.one(stmt, for_update=for_update)

    async def by_key(self, user_id: str, key: str) -> WalletRefund | None:
        return await self.one(
            select(WalletRefund).where(
                WalletRefund.user_id == user_id, WalletRefund.idempotency_key == key
            )
        )

    async def parts(self, wallet_refund_ids: list[int]) -> dict[int, list[Refund]]:
        """The refunds of each cash-out, in allocation order (newest charge first)."""
        found: dict[int, list[Refund]] = {i: [] for i in wallet_refund_ids}
        if not wallet_refund_ids:
            return found
        rows = await self.session.scalars(
            select(Refund)
            .where(Refund.wallet_refund_id.in_(wallet_refund_ids))
            .order_by(Refund.id)
            .execution_options(populate_existing=True)
        )
        for row in rows.all():
            found[int(row.wallet_refund_id or 0)].append(row)
        return found

    async def page(self, user_id: str, *, limit: int, before_id: int | None) -> list[WalletRefund]:
        return await self.newest_first(
            WalletRefund.user_id == user_id, limit=limit, before_id=before_id
        )

    async def refundable_topups(
        self, user_id: str, currency: str, *, since: datetime
    ) -> list[tuple[Order, int]]:
        """The user's confirmed top-ups in ``currency`` paid since ``since`` (Stripe's
        refund window), locked in id order (no lock cycles between concurrent
        cash-outs), each with the amount of its refunds still in flight; newest first."""
        orders = list(
            (
                await self.session.scalars(
                    select(Order)
                    .where(
                        Order.user_id == user_id,
                        Order.purpose == "topup",
                        Order.currency == currency,
                        Order.status.in_(("succeeded", "partially_refunded")),
                        Order.stripe_payment_intent_id.is_not(None),
                        Order.succeeded_at >= since,
                    )
                    .order_by(Order.id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
        if not orders:
            return []
        rows = await self.session.execute(
            select(Refund.order_id, func.sum(Refund.amount))
            .where(Refund.order_id.in_([o.id for o in orders]), Refund.status.in_(IN_FLIGHT))
            .group_by(Refund.order_id)
        )
        in_flight = {int(order_id): int(total) for order_id, total in rows.all()}
        orders.sort(key=lambda o: (o.succeeded_at or o.created_at, o.id), reverse=True)
        return [(o, int(in_flight.get(o.id) or 0)) for o in orders]
