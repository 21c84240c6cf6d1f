from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from payments_api.disputes.models import OPEN_STATUSES, Dispute
from payments_api.kit.row_repository import RowRepository


class DisputeRepository(RowRepository[Dispute]):
    model = Dispute

    async def by_stripe_id(
        self, stripe_dispute_id: str, *, for_update: bool = False
    ) -> Dispute | None:
        return await self.one(
            select(Dispute).where(Dispute.stripe_dispute_id == stripe_dispute_id),
            for_update=for_update,
        )

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
        conditions = []
        if status is not None:
            conditions.append(Dispute.status == status)
        if user_id is not None:
            conditions.append(Dispute.user_id == user_id)
        return await self.newest_first(*conditions, limit=limit, before_id=before_id)
