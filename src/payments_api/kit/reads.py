"""Response schemas read off rows whose columns are named as the schema's fields, so a
``*_read`` function says only what differs (the public id, a derived field)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

ReadT = TypeVar("ReadT", bound=BaseModel)


def read_of(model: type[ReadT], row: object, **given: Any) -> ReadT:
    """``model`` with the fields ``given``, each other field read off ``row``'s attribute
    of the same name; a field the row has no attribute for keeps its default (or is
    refused by validation when it has none)."""
    values = {
        name: getattr(row, name)
        for name in model.model_fields
        if name not in given and hasattr(row, name)
    }
    return model.model_validate({**values, **given})
