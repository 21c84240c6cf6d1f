from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.disputes.models import OPEN_STATUSES, Dispute


class DisputeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, dispute_id: int) -> Dispute | None:
        result: Dispute | None = await self.session.scalar(
            select(Dispute).where(Dispute.id == dispute_id)
        )
        return result

    async def by_stripe_id(
        self, stripe_dispute_id: str, *, for_update: bool = False
    ) -> Dispute | None:
        stmt = select(Dispute).where(Dispute.stripe_dispute_id == stripe_dispute_id)
        if for_update:
            stmt = stmt.with_for_update()
        result: Dispute | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return result

    async def insert_if_new(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            insert(Dispute)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Dispute.stripe_dispute_id])
        )

    async def holding_wallet(self, user_id: str, *, besides: int) -> int:
        """The user's other disputes that keep a wallet frozen: open ones and lost ones."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Dispute)
            .where(
                Dispute.user_id == user_id,
                Dispute.id != besides,
                Dispute.status.in_((*OPEN_STATUSES, "lost")),
            )
        )
        return int(count or 0)

    async def page(
        self, *, limit: int, before_id: int | None, status: str | None, user_id: str | None
    ) -> list[Dispute]:
        stmt = select(Dispute).order_by(Dispute.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(Dispute.id < before_id)
        if status is not None:
            stmt = stmt.where(Dispute.status == status)
        if user_id is not None:
            stmt = stmt.where(Dispute.user_id == user_id)
        return list((await self.session.scalars(stmt)).all())
