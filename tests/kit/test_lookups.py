"""``kit.lookups.by_public_id``: the row a public id names, or the not-found problem for
a malformed id (without a lookup) and for an unknown one alike."""

from __future__ import annotations

import pytest

from payments_api.kit.lookups import by_public_id


class Missing(Exception):
    pass


async def test_answers_what_the_lookup_finds_for_the_number() -> None:
    asked: list[int] = []

    async def lookup(number: int) -> str | None:
        asked.append(number)
        return f"row {number}"

    assert await by_public_id("prj", "prj_12", lookup, Missing) == "row 12"
    assert asked == [12]


@pytest.mark.parametrize("value", ["ses_12", "prj_", "prj_1a", "prj_²", "12", "prj_" + "9" * 19])
async def test_a_malformed_id_is_missing_without_a_lookup(value: str) -> None:
    async def lookup(number: int) -> str | None:
        raise AssertionError(f"looked up {number}")

    with pytest.raises(Missing):
        await by_public_id("prj", value, lookup, Missing)


async def test_an_id_naming_nothing_is_missing() -> None:
    async def lookup(number: int) -> str | None:
        return None

    with pytest.raises(Missing):
        await by_public_id("prj", "prj_7", lookup, Missing)
