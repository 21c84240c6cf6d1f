"""Every error is problem+json with a request id; bad bodies are refused before any write."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.deps import CurrentUser
from payments_api.money import Currency, MinorAmount
from payments_api.users.models import User
from tests.helpers import auth


class _Echo(BaseModel):
    amount: MinorAmount
    currency: Currency


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/test/echo")
    async def echo(body: _Echo, user: CurrentUser) -> dict[str, Any]:
        return {"amount": body.amount, "currency": body.currency, "user": user.id}

    @router.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    @router.post("/test/write-then-fail")
    async def write_then_fail(user: CurrentUser) -> None:
        raise RuntimeError("after the user row was written")

    return router


@pytest.fixture
async def test_client(app_factory: Any) -> Any:
    app = app_factory()
    app.include_router(_router())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _no_user(session: AsyncSession, sub: str) -> bool:
    return (await session.scalar(select(User).where(User.id == sub))) is None


def _assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith(f"/{code}")
    assert body["request_id"] == response.headers["x-request-id"]


class TestProblems:
    async def test_valid_request_passes(self, test_client: httpx.AsyncClient) -> None:
        response = await test_client.post(
            "/test/echo", json={"amount": 1050, "currency": "eur"}, headers=auth("u-ok")
        )
        assert response.status_code == 200
        assert response.json() == {"amount": 1050, "currency": "eur", "user": "u-ok"}

    async def test_malformed_json(
        self, test_client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await test_client.post(
            "/test/echo",
            content=b'{"amount": 10',
            headers={**auth("u-bad-json"), "Content-Type": "application/json"},
        )
        _assert_problem(response, 400, "malformed_json")
        assert await _no_user(session, "u-bad-json")

    @pytest.mark.parametrize(
        "body",
        [
            {"amount": 10.5, "currency": "usd"},
            {"amount": 10.0, "currency": "usd"},
            {"amount": "10.5", "currency": "usd"},
            {"amount": "1050", "currency": "usd"},
            {"amount": True, "currency": "usd"},
            {"amount": 0, "currency": "usd"},
            {"amount": -5, "currency": "usd"},
            {"amount": 1050, "currency": "xyz"},
            {"amount": 1050},
        ],
    )
    async def test_invalid_body_is_422_and_writes_nothing(
        self, test_client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
    ) -> None:
        response = await test_client.post("/test/echo", json=body, headers=auth("u-invalid"))
        _assert_problem(response, 422, "validation_error")
        assert response.json()["errors"]
        assert await _no_user(session, "u-invalid")

    async def test_wrong_content_type(self, test_client: httpx.AsyncClient) -> None:
        response = await test_client.post(
            "/test/echo",
            content=b"amount=1050&currency=usd",
            headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"},
        )
        _assert_problem(response, 415, "unsupported_media_type")

    async def test_oversized_body_by_header(self, test_client: httpx.AsyncClient) -> None:
        response = await test_client.post(
            "/test/echo",
            content=b"x" * (64 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        _assert_problem(response, 413, "payload_too_large")

    async def test_oversized_body_streamed(self, test_client: httpx.AsyncClient) -> None:
        async def chunks() -> Any:
            for _ in range(20):
                yield b"x" * 8192

        response = await test_client.post(
            "/test/echo", content=chunks(), headers={"Content-Type": "application/json"}
        )
        _assert_problem(response, 413, "payload_too_large")

    async def test_unknown_route_and_method(self, test_client: httpx.AsyncClient) -> None:
        _assert_problem(await test_client.get("/nope"), 404, "not_found")
        _assert_problem(await test_client.delete("/healthz"), 405, "method_not_allowed")

    async def test_unhandled_error_is_generic_500(self, test_client: httpx.AsyncClient) -> None:
        response = await test_client.get("/test/boom")
        _assert_problem(response, 500, "internal_error")
        assert "secret internal detail" not in response.text
        assert "Traceback" not in response.text

    async def test_error_after_write_rolls_back(
        self, test_client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await test_client.post("/test/write-then-fail", headers=auth("u-rollback"))
        _assert_problem(response, 500, "internal_error")
        assert await _no_user(session, "u-rollback")

    async def test_request_id_is_propagated(self, test_client: httpx.AsyncClient) -> None:
        response = await test_client.get("/healthz", headers={"X-Request-ID": "req-abcdef123"})
        assert response.headers["x-request-id"] == "req-abcdef123"
        spoofed = await test_client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
        assert spoofed.headers["x-request-id"] != "bad id\n"
