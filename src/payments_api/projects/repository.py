from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import BigInteger, ColumnElement, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row, newest_first
from payments_api.projects.models import DirectPayment, Project, ProjectSession


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Sums over confirmed direct payments (the payee's net take)."""

    payment_count: int = 0
    paid_request_count: int = 0
    tip_count: int = 0
    total_tip_amount: int = 0
    total_request_amount: int = 0
    total_earned_amount: int = 0
    last_paid_at: datetime | None = None


def _aggregate_columns() -> list[ColumnElement[Any]]:
    is_tip = DirectPayment.kind == "tip"
    is_request = DirectPayment.kind == "request"

    def total(condition: ColumnElement[bool] | None = None) -> ColumnElement[int]:
        summed: ColumnElement[int] = func.sum(DirectPayment.net_amount)
        if condition is not None:
            summed = func.sum(DirectPayment.net_amount).filter(condition)
        return cast(func.coalesce(summed, 0), BigInteger)

    return [
        func.count(DirectPayment.id),
        func.count(DirectPayment.id).filter(is_request),
        func.count(DirectPayment.id).filter(is_tip),
        total(is_tip),
        total(is_request),
        total(),
        func.max(DirectPayment.paid_at),
    ]


RowT = TypeVar("RowT", Project, ProjectSession)


class ProjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _added(self, row: RowT) -> RowT:
        """``row`` inserted and read back with what the database filled in (id, times)."""
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return row

    async def add(self, project: Project) -> Project:
        return await self._added(project)

    async def get(self, project_id: int, *, for_update: bool = False) -> Project | None:
        return await fresh_row(
            self.session, Project, Project.id == project_id, for_update=for_update
        )

    async def page(self, owner_id: str, *, limit: int, before_id: int | None) -> list[Project]:
        return await newest_first(
            self.session,
            Project,
            Project.id,
            Project.owner_id == owner_id,
            limit=limit,
            before=before_id,
        )

    async def open_sessions(self, project_ids: Sequence[int]) -> dict[int, int]:
        """The open session id of each project that has one."""
        if not project_ids:
            return {}
        rows = await self.session.execute(
            select(ProjectSession.project_id, ProjectSession.id).where(
                ProjectSession.project_id.in_(project_ids), ProjectSession.status == "open"
            )
        )
        return {int(project_id): int(session_id) for project_id, session_id in rows.all()}

    async def session_count(self, project_id: int) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(ProjectSession)
            .where(ProjectSession.project_id == project_id)
        )
        return int(count or 0)

    # --- sessions ----------------------------------------------------------------------

    async def add_session(self, row: ProjectSession) -> ProjectSession:
        return await self._added(row)

    async def get_session(
        self, project_id: int, session_id: int, *, for_update: bool = False
    ) -> ProjectSession | None:
        return await fresh_row(
            self.session,
            ProjectSession,
            ProjectSession.id == session_id,
            ProjectSession.project_id == project_id,
            for_update=for_update,
        )

    async def session_page(
        self,
        project_id: int,
        *,
        limit: int,
        before_id: int | None,
        status: str | None = None,
    ) -> list[ProjectSession]:
        conditions = [ProjectSession.project_id == project_id]
        if status is not None:
            conditions.append(ProjectSession.status == status)
        return await newest_first(
            self.session,
            ProjectSession,
            ProjectSession.id,
            *conditions,
            limit=limit,
            before=before_id,
        )


class DirectPaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> int | None:
        """Insert the reporting row of a payment; None when it was recorded already
        (a concurrent twin waits on the unique index, then conflicts)."""
        result = await self.session.execute(
            insert(DirectPayment)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[DirectPayment.stripe_payment_intent_id])
            .returning(DirectPayment.id)
        )
        inserted: int | None = result.scalar_one_or_none()
        return inserted

    async def by_order(self, order_id: int, *, for_update: bool = False) -> DirectPayment | None:
        return await fresh_row(
            self.session, DirectPayment, DirectPayment.order_id == order_id, for_update=for_update
        )

    async def project_aggregate(self, project_id: int) -> Aggregate:
        """Sums over the project's payments, computed by PostgreSQL."""
        row = (
            await self.session.execute(
                select(*_aggregate_columns()).where(DirectPayment.project_id == project_id)
            )
        ).one()
        return Aggregate(*row)

    async def session_aggregates(self, session_ids: Sequence[int]) -> dict[int, Aggregate]:
        """Sums per session over the given sessions, in one grouped query."""
        if not session_ids:
            return {}
        rows = await self.session.execute(
            select(DirectPayment.session_id, *_aggregate_columns())
            .where(DirectPayment.session_id.in_(session_ids))
            .group_by(DirectPayment.session_id)
        )
        return {int(session_id): Aggregate(*values) for session_id, *values in rows.all()}
