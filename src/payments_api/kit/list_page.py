"""The envelope of a page of a list, in Stripe's style: ``object``, ``data``, ``has_more``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

ItemT = TypeVar("ItemT")


class ListPage(BaseModel, Generic[ItemT]):
    """A page of ``ItemT``; a subclass names the list (its schema's name in OpenAPI)."""

    object: str = Field("list", description="Always `list`.")
    data: list[ItemT]
    has_more: bool
