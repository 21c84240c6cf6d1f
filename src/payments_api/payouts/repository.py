from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row, newest_first
from payments_api.payouts.models import Payout, Withdrawal


class WithdrawalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, withdrawal_id: int, *, for_update: bool = False) -> Withdrawal | None:
        return await fresh_row(
            self.session, Withdrawal, Withdrawal.id == withdrawal_id, for_update=for_update
        )

    async def by_key(self, user_id: str, key: str) -> Withdrawal | None:
        result: Withdrawal | None = await self.session.scalar(
            select(Withdrawal).where(
                Withdrawal.user_id == user_id, Withdrawal.idempotency_key == key
            )
        )
        return result

    async def by_transfer(self, transfer_id: str) -> Withdrawal | None:
        where = Withdrawal.stripe_transfer_id == transfer_id
        return await fresh_row(self.session, Withdrawal, where, for_update=True)

    async def page(
        self, user_id: str, *, limit: int, before_id: int | None = None
    ) -> list[Withdrawal]:
        where = Withdrawal.user_id == user_id
        return await newest_first(
            self.session, Withdrawal, Withdrawal.id, where, limit=limit, before=before_id
        )

    async def recent(self, user_id: str, limit: int) -> list[Withdrawal]:
        return await self.page(user_id, limit=limit)

    async def stuck(self, now: datetime, limit: int) -> list[int]:
        """Pending withdrawals whose transfer outcome is unknown and due for a retry."""
        stmt = (
            select(Withdrawal.id)
            .where(
                Withdrawal.status == "pending",
                (Withdrawal.next_attempt_at.is_(None)) | (Withdrawal.next_attempt_at <= now),
            )
            .order_by(Withdrawal.id)
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())


class PayoutRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_from_event(self, values: dict[str, Any]) -> None:
        """Insert or update a payout unless the stored state comes from a newer event."""
        stmt = insert(Payout).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Payout.stripe_payout_id],
            set_={
                k: stmt.excluded[k]
                for k in ("status", "failure_code", "arrival_date", "event_created", "user_id")
            },
            where=Payout.event_created <= stmt.excluded.event_created,
        )
        await self.session.execute(stmt)

    async def get(self, stripe_payout_id: str) -> Payout | None:
        return await fresh_row(self.session, Payout, Payout.stripe_payout_id == stripe_payout_id)
