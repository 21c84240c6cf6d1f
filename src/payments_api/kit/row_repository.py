"""What every one-table repository does the same way: add a row, load one by its id
(optionally locked), load the one a query selects, page a user's rows newest first.

A repository says which mapped class it serves (``model``) and keeps only its own
queries; the SQL these helpers send is the SQL each repository used to write out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row, newest_first

RowT = TypeVar("RowT")
FoundT = TypeVar("FoundT")


class RowRepository(Generic[RowT]):
    """Rows of ``model``, whose primary key is its integer column ``id``; the reads are
    ``kit.fresh_rows``'s, bound to the repository's session and model."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: RowT) -> RowT:
        """Insert ``row`` now (flushed, so its id is set)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, row_id: int, *, for_update: bool = False) -> RowT | None:
        found: RowT | None = await fresh_row(
            self.session, self.model, self.model.id == row_id, for_update=for_update
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
            found: RowT | None = await fresh_row(
                self.session, self.model, condition, for_update=True
            )
            if found is not None:
                return found
        return None

    async def newest_first(
        self, *conditions: ColumnElement[bool], limit: int, before_id: int | None
    ) -> list[RowT]:
        """Up to ``limit`` rows meeting ``conditions``, newest (highest id) first, below
        the cursor ``before_id`` when given."""
        rows: list[RowT] = await newest_first(
            self.session, self.model, self.model.id, *conditions, limit=limit, before=before_id
        )
        return rows
