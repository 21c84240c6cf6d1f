"""The bearer token is verified once per request, however many layers need the caller:
the rate limiter, the idempotency layer and the route's ``PrincipalDep`` share the
outcome kept in ``request.state.principal``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal, TokenVerifier
from tests.helpers import auth
from tests.idempotency.conftest import ONE_TRANSACTION_CREDITS, PROBE, fresh_id


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The token of every ``TokenVerifier.verify`` call."""
    calls: list[str] = []
    original = TokenVerifier.verify

    @functools.wraps(original)
    def counting(self: TokenVerifier, token: str) -> Principal:
        calls.append(token)
        return original(self, token)

    monkeypatch.setattr(TokenVerifier, "verify", counting)
    return calls


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_write_with_key_and_rate_limits_verifies_once(
    committed_app: Callable[..., FastAPI],
    committed: async_sessionmaker[AsyncSession],
    verifications: list[str],
) -> None:
    app = committed_app(rate_limit_enabled=True)
    headers = {**auth(fresh_id()), "Idempotency-Key": fresh_id("key")}
    async with _client(app) as client:
        response = await client.post(
            ONE_TRANSACTION_CREDITS, json={"amount": 100, "currency": "usd"}, headers=headers
        )
    assert response.status_code == 201, response.text
    assert verifications == [headers["Authorization"].removeprefix("Bearer ")]


async def test_read_verifies_once(
    committed_app: Callable[..., FastAPI], verifications: list[str]
) -> None:
    app = committed_app(rate_limit_enabled=True)
    async with _client(app) as client:
        response = await client.get(f"{PROBE}/echo", headers=auth(fresh_id()))
    assert response.status_code == 200, response.text
    assert len(verifications) == 1


async def test_invalid_token_is_verified_once_and_answered_401(
    committed_app: Callable[..., FastAPI], verifications: list[str]
) -> None:
    app = committed_app(rate_limit_enabled=True)
    headers: dict[str, Any] = {"Authorization": "Bearer not-a-jwt", "Idempotency-Key": "k"}
    async with _client(app) as client:
        response = await client.post(
            ONE_TRANSACTION_CREDITS, json={"amount": 100, "currency": "usd"}, headers=headers
        )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert verifications == ["not-a-jwt"]
