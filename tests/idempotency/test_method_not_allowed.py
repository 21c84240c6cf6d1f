"""An undeclared method on a write route is 405 with every allowed method in Allow,
whether or not an Idempotency-Key is sent (the idempotency layer runs before routing
and must not answer for a route that does not exist)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.helpers import auth


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "without-key"])
async def test_an_undeclared_method_is_405_listing_the_allowed_ones(
    client: httpx.AsyncClient, with_key: bool
) -> None:
    headers = {**auth("m405-user", ["customer"])}
    if with_key:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    response = await client.put("/api/v1/escrows", json={}, headers=headers)
    assert response.status_code == 405, response.text
    assert response.json()["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
