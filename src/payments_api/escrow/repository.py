from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow


class EscrowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Escrow | None:
        """Insert an escrow; None when the customer already used this creation key."""
        stmt = (
            insert(Escrow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Escrow.customer_id, Escrow.creation_key])
            .returning(Escrow)
            .execution_options(populate_existing=True)
        )
        escrow: Escrow | None = await self.session.scalar(stmt)
        return escrow

    async def get(self, escrow_id: int, *, for_update: bool = False) -> Escrow | None:
        stmt = select(Escrow).where(Escrow.id == escrow_id)
        if for_update:
            # Every transition takes this lock first, so concurrent transitions of one
            # escrow run one after the other and each sees the previous one's status.
            stmt = stmt.with_for_update()
        escrow: Escrow | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return escrow

    async def get_by_creation_key(self, customer_id: str, creation_key: str) -> Escrow | None:
        escrow: Escrow | None = await self.session.scalar(
            select(Escrow).where(
                Escrow.customer_id == customer_id, Escrow.creation_key == creation_key
            )
        )
        return escrow

    async def page(
        self,
        user_id: str,
        *,
        role: str | None,
        status: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[Escrow]:
        """The user's escrows (as customer, payee or both), newest first."""
        if role == "customer":
            party = Escrow.customer_id == user_id
        elif role == "payee":
            party = Escrow.payee_id == user_id
        else:
            party = or_(Escrow.customer_id == user_id, Escrow.payee_id == user_id)
        stmt = select(Escrow).where(party).order_by(Escrow.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(Escrow.status == status)
        if before_id is not None:
            stmt = stmt.where(Escrow.id < before_id)
        return list((await self.session.scalars(stmt)).all())
