"""An empty ``starting_after`` is the first page on every list of the contract (the
spec's parameter is a plain optional string, so the empty string is allowed): the
answer equals the one without a cursor, never 422 ``invalid_cursor``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from payments_api.main import create_app
from payments_api.settings import Settings
from tests.helpers import auth

ALL_ROLES = ["customer", "payee", "admin", "service"]
# Answers that name the moment they were computed.
VOLATILE = ("summary_as_of",)


def _stable(response: httpx.Response) -> Any:
    body = response.json()
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in VOLATILE and k != "request_id"}
    return body


def _cursor_lists(settings: Settings) -> list[str]:
    spec: dict[str, Any] = create_app(settings).openapi()
    return sorted(
        path
        for path, operations in spec["paths"].items()
        if "{" not in path
        and any(
            p["name"] == "starting_after" for p in operations.get("get", {}).get("parameters", [])
        )
    )


async def test_every_list_takes_an_empty_cursor_as_the_first_page(
    client: httpx.AsyncClient, settings: Settings, stripe_mock: respx.MockRouter
) -> None:
    stripe_mock.get(url__regex=r"/v1/.*").respond(
        200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/x"}
    )
    paths = _cursor_lists(settings)
    assert len(paths) >= 15
    headers = auth("empty-cursor", ALL_ROLES)
    different: list[str] = []
    for path in paths:
        first = await client.get(path, headers=headers)
        empty = await client.get(f"{path}?starting_after=", headers=headers)
        if empty.status_code != first.status_code or _stable(empty) != _stable(first):
            different.append(f"{path}: {first.status_code} vs {empty.status_code} {empty.text}")
        elif empty.status_code == 422:
            different.append(f"{path}: refused {empty.text}")
    assert different == [], "\n".join(different)


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/escrows", "/api/v1/me/ledger"])
async def test_a_cursor_of_spaces_is_still_refused(client: httpx.AsyncClient, path: str) -> None:
    """Only the empty string means "from the start"; anything else must be an id."""
    response = await client.get(f"{path}?starting_after=%20", headers=auth("empty-cursor"))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_cursor"
