from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.refunds.models import Refund

IN_FLIGHT = ("pending", "requires_action")


class RefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, refund: Refund) -> Refund:
        self.session.add(refund)
        await self.session.flush()
        return refund

    async def get(self, refund_id: int, *, for_update: bool = False) -> Refund | None:
        stmt = select(Refund).where(Refund.id == refund_id)
        if for_update:
            stmt = stmt.with_for_update()
        result: Refund | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return result

    async def by_stripe_id(self, stripe_refund_id: str) -> Refund | None:
        result: Refund | None = await self.session.scalar(
            select(Refund).where(Refund.stripe_refund_id == stripe_refund_id)
        )
        return result

    async def by_idempotency_key(self, actor_id: str, key: str) -> Refund | None:
        result: Refund | None = await self.session.scalar(
            select(Refund)
            .where(Refund.requested_by == actor_id, Refund.idempotency_key == key)
            .execution_options(populate_existing=True)
        )
        return result

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
        stmt = select(Refund).order_by(Refund.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(Refund.id < before_id)
        if order_id is not None:
            stmt = stmt.where(Refund.order_id == order_id)
        if status is not None:
            stmt = stmt.where(Refund.status == status)
        return list((await self.session.scalars(stmt)).all())

    async def stuck(self, older_than: datetime, limit: int) -> list[int]:
        """Admin refunds never confirmed as created at Stripe (crash or timeout)."""
        rows = await self.session.scalars(
            select(Refund.id)
            .where(
                Refund.status == "pending",
                Refund.origin == "admin",
                Refund.stripe_refund_id.is_(None),
                Refund.updated_at < older_than,
            )
            .order_by(Refund.id)
            .limit(limit)
        )
        return list(rows.all())
