"""Reads of ORM rows that repositories write the same way: one row afresh (optionally
locked), and a keyset page newest first."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

RowT = TypeVar("RowT")


async def fresh_row(
    session: AsyncSession,
    model: type[RowT],
    *where: ColumnElement[bool],
    for_update: bool = False,
) -> RowT | None:
    """The row of ``model`` matching ``where`` (None when none does), read afresh: a row
    the session holds already takes the database's values (``populate_existing``), so a
    lock taken now (``for_update``) is not undone by stale attributes."""
    stmt = select(model).where(*where)
    if for_update:
        stmt = stmt.with_for_update()
    result: RowT | None = await session.scalar(stmt.execution_options(populate_existing=True))
    return result


async def newest_first(
    session: AsyncSession,
    model: type[RowT],
    key: QueryableAttribute[Any],
    *where: ColumnElement[bool],
    limit: int,
    before: Any = None,
) -> list[RowT]:
    """Up to ``limit`` rows of ``model`` matching ``where``, highest ``key`` first; only
    those below ``before`` when given (the page after the row with that key)."""
    stmt = select(model).where(*where).order_by(key.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(key < before)
    return list((await session.scalars(stmt)).all())
