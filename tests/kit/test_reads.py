"""``kit.reads.read_of``: a schema read off a row's attributes of the same names."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel, ValidationError

from payments_api.kit.reads import read_of


class ThingRead(BaseModel):
    id: str
    amount: int
    note: str | None
    object: str = "thing"


@dataclass
class ThingRow:
    id: int
    amount: int
    note: str | None
    secret: str = "not read"


def test_fields_come_from_the_row_unless_given() -> None:
    read = read_of(ThingRead, ThingRow(7, 250, None), id="thg_7")
    assert read == ThingRead(id="thg_7", amount=250, note=None, object="thing")


def test_a_given_value_wins_over_the_rows_attribute() -> None:
    assert read_of(ThingRead, ThingRow(7, 250, "a"), id="thg_7", note="b").note == "b"


def test_a_required_field_the_row_lacks_is_refused() -> None:
    @dataclass
    class Partial:
        id: int

    with pytest.raises(ValidationError):
        read_of(ThingRead, Partial(7), id="thg_7")
