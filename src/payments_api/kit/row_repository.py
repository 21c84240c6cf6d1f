"""What every one-table repository does the same way: add a row, load one by its id
(optionally locked), load the one a query selects, page a user's rows newest first.

A repository says which mapped class it serves (``model``) and keeps only its own
queries; the SQL these helpers send is the SQL each repository used to write out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

RowT = TypeVar("RowT")
FoundT = TypeVar("FoundT")


class RowRepository(Generic[RowT]):
    """Rows of ``model``, whose primary key is one integer column."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _id(self) -> ColumnElement[int]:
        column: ColumnElement[int] = inspect(self.model).primary_key[0]
        return column

    async def add(self, row: RowT) -> RowT:
        """Insert ``row`` now (flushed, so its id is set)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, row_id: int, *, for_update: bool = False) -> RowT | None:
        found: RowT | None = await self.one(
            select(self.model).where(self._id == row_id), for_update=for_update
        )
        return found

    async def one(
        self, stmt: Select[FoundT], *, for_update: bool = False, fresh: bool = True
    ) -> FoundT | None:
        """The row ``stmt`` selects, or None. ``for_update`` locks it; ``fresh``
        (populate_existing) overwrites a copy the session already holds with what the
        database has, so a row read after a lock is never a stale one."""
        if for_update:
            stmt = stmt.with_for_update()
        if fresh:
            stmt = stmt.execution_options(populate_existing=True)
        result: FoundT | None = await self.session.scalar(stmt)
        return result

    async def first_locked(self, conditions: Iterable[ColumnElement[bool]]) -> RowT | None:
        """The first row found, locked, trying each condition in turn."""
        for condition in conditions:
            found: RowT | None = await self.one(
                select(self.model).where(condition), for_update=True
            )
            if found is not None:
                return found
        return None

    async def newest_first(
        self, *conditions: ColumnElement[bool], limit: int, before_id: int | None
    ) -> list[RowT]:
        """Up to ``limit`` rows meeting ``conditions``, newest (highest id) first, below
        the cursor ``before_id`` when given."""
        stmt = select(self.model).where(*conditions).order_by(self._id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(self._id < before_id)
        return list((await self.session.scalars(stmt)).all())
