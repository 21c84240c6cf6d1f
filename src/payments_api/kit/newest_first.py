"""The query behind the admin list pages of a table: its rows newest first (by id),
a page at a time, narrowed by the filters the request gave."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select

RowT = TypeVar("RowT")


def newest_first(
    model: type[RowT], *, limit: int, before_id: int | None, **equal_to: Any
) -> Select[RowT]:
    """``limit`` rows of ``model`` newest first, older than ``before_id`` when given, where
    each column of ``equal_to`` whose value is given (not None) equals it."""
    table: Any = model
    stmt = select(model).order_by(table.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(table.id < before_id)
    for column, value in equal_to.items():
        if value is not None:
            stmt = stmt.where(getattr(table, column) == value)
    return stmt
