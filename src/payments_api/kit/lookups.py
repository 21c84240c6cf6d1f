"""Finding the row a public id (``<prefix>_<number>``) names, or answering that it is not
found: a malformed id and an unknown one are the same 404 to the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from payments_api.kit.pagination import parse_public_id

RowT = TypeVar("RowT")


async def by_public_id(
    prefix: str,
    value: str,
    lookup: Callable[[int], Awaitable[RowT | None]],
    missing: Callable[[], Exception],
) -> RowT:
    """What ``lookup`` finds for the number in ``value``; ``missing()`` is raised when
    ``value`` is not an id of ``prefix`` or ``lookup`` finds nothing."""
    number = parse_public_id(prefix, value)
    row = await lookup(number) if number is not None else None
    if row is None:
        raise missing()
    return row
