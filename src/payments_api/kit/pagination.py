"""Cursor pagination in Stripe's style: ``limit``, ``starting_after``, ``has_more``.

Ids are exposed as ``<prefix>_<number>``; the cursor is the last id a client saw.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from payments_api.problems import ProblemError

Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]


class InvalidCursor(ProblemError):
    status = 422
    code = "invalid_cursor"
    title = "Invalid pagination cursor"


def public_id(prefix: str, value: int) -> str:
    return f"{prefix}_{value}"


def parse_public_id(prefix: str, value: str) -> int | None:
    head, _, number = value.partition("_")
    # ASCII digits only: str.isdigit() also accepts "²" and other Unicode digits, which
    # int() then refuses (a 500) or reads as another number (aliasing a real id).
    if head != prefix or not (number.isascii() and number.isdigit()) or len(number) > 18:
        return None
    return int(number)


def parse_cursor(prefix: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None  # an empty cursor is the first page, as the spec allows
    parsed = parse_public_id(prefix, value)
    if parsed is None:
        raise InvalidCursor(f"`starting_after` must be an id like {prefix}_123.")
    return parsed
