"""Every path of the contract, asked with a method it does not declare, answers 405
``method_not_allowed`` with an ``Allow`` header naming exactly the methods the contract
declares for it. The idempotency layer runs before routing: with an Idempotency-Key
(which it would otherwise claim) and without one, the answer is the router's 405."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from payments_api.main import create_app
from payments_api.settings import Settings
from tests.helpers import auth

WRITE_METHODS = ("post", "put", "patch", "delete")
ALL_ROLES = ["customer", "payee", "admin", "service"]


def _declared(settings: Settings) -> dict[str, set[str]]:
    spec: dict[str, Any] = create_app(settings).openapi()
    return {
        path: {method.upper() for method in operations if method != "parameters"}
        for path, operations in spec["paths"].items()
    }


def _concrete(path: str) -> str:
    # Routing happens before any path id is parsed: any segment reaches the route.
    return re.sub(r"\{[^}]+\}", "1", path)


def _write_paths(settings: Settings) -> list[tuple[str, set[str], str]]:
    cases = []
    for path, methods in sorted(_declared(settings).items()):
        if not methods & {m.upper() for m in WRITE_METHODS}:
            continue
        undeclared = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in methods)
        cases.append((path, methods, undeclared))
    return cases


async def test_every_write_path_answers_405_with_its_full_allow(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    cases = _write_paths(settings)
    # The contract has many write paths, several serving more than one method.
    assert len(cases) > 40
    assert any(len(methods) > 1 for _, methods, _ in cases)
    failures: list[str] = []
    for path, methods, undeclared in cases:
        for with_key in (True, False):
            headers = auth("sweep-405", ALL_ROLES)
            if with_key:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            response = await client.request(undeclared, _concrete(path), json={}, headers=headers)
            allow = {m.strip() for m in response.headers.get("allow", "").split(",") if m}
            code = response.json().get("code") if response.content else None
            if (response.status_code, code, allow) != (405, "method_not_allowed", methods):
                failures.append(
                    f"{undeclared} {path} (key: {with_key}): {response.status_code} {code} "
                    f"Allow={sorted(allow)}, declared {sorted(methods)}"
                )
    assert failures == []


@pytest.mark.parametrize("path", ["/api/v1/escrows", "/api/v1/me/auto-reloads"])
async def test_a_path_of_several_routes_lists_all_of_them(
    client: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    declared = _declared(settings)[path]
    assert len(declared) >= 2
    response = await client.patch(path, json={}, headers=auth("sweep-405", ALL_ROLES))
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == declared
