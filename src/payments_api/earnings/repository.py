from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings.models import Earning


@dataclass(frozen=True, slots=True)
class SummaryRow:
    currency: str
    today: int
    last_7_days: int
    last_30_days: int
    all_time: int


class EarningsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Earning | None:
        """Insert an entry; None when the source was recorded already."""
        stmt = (
            insert(Earning)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Earning.source_type, Earning.source_id])
            .returning(Earning)
        )
        earning: Earning | None = await self.session.scalar(stmt)
        return earning

    async def get(self, payee_id: str, earning_id: int) -> Earning | None:
        earning: Earning | None = await self.session.scalar(
            select(Earning).where(Earning.id == earning_id, Earning.payee_id == payee_id)
        )
        return earning

    @staticmethod
    def _filters(
        payee_id: str, currency: str | None, project_id: str | None
    ) -> list[ColumnElement[bool]]:
        conditions = [Earning.payee_id == payee_id]
        if currency is not None:
            conditions.append(Earning.currency == currency)
        if project_id is not None:
            conditions.append(Earning.project_id == project_id)
        return conditions

    async def page(
        self,
        payee_id: str,
        *,
        limit: int,
        after: Earning | None,
        currency: str | None,
        project_id: str | None,
        earned_from: datetime | None,
        earned_before: datetime | None,
    ) -> list[Earning]:
        """Newest first by (earned_at, id): keyset pagination that stays correct when
        entries are recorded out of time order."""
        conditions = self._filters(payee_id, currency, project_id)
        if earned_from is not None:
            conditions.append(Earning.earned_at >= earned_from)
        if earned_before is not None:
            conditions.append(Earning.earned_at < earned_before)
        if after is not None:
            conditions.append(
                tuple_(Earning.earned_at, Earning.id) < tuple_(after.earned_at, after.id)
            )
        stmt = (
            select(Earning)
            .where(and_(*conditions))
            .order_by(Earning.earned_at.desc(), Earning.id.desc())
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def summary(
        self,
        payee_id: str,
        *,
        today: datetime,
        last_7_days: datetime,
        last_30_days: datetime,
        until: datetime,
        currency: str | None,
        project_id: str | None,
    ) -> list[SummaryRow]:
        """Per-currency sums over the windows, computed by PostgreSQL in one pass over
        the payee's rows (``sum(...) FILTER (WHERE ...)``)."""

        def window(start: datetime) -> ColumnElement[int]:
            in_window = and_(Earning.earned_at >= start, Earning.earned_at < until)
            return cast(func.coalesce(func.sum(Earning.amount).filter(in_window), 0), BigInteger)

        stmt = (
            select(
                Earning.currency,
                window(today),
                window(last_7_days),
                window(last_30_days),
                cast(func.sum(Earning.amount), BigInteger),
            )
            .where(and_(*self._filters(payee_id, currency, project_id)))
            .group_by(Earning.currency)
            .order_by(Earning.currency)
        )
        return [SummaryRow(*row) for row in await self.session.execute(stmt)]
