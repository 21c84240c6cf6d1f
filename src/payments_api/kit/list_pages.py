"""The page every list endpoint answers with: ``{"object": "list", "data": [...],
"has_more": ...}``, typed by what it lists (a subclass names the schema)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

ItemT = TypeVar("ItemT", bound=BaseModel)


class ListPage(BaseModel, Generic[ItemT]):
    object: Literal["list"] = "list"
    data: list[ItemT]
    has_more: bool
