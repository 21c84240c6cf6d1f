"""Write requests are limited per user and per client IP, with 429 problems."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import auth

ADJUST = "/api/v1/admin/adjustments"


async def _post(client: httpx.AsyncClient, user: str, key: str) -> httpx.Response:
    # An admin write with a body that fails validation: it reaches the limiter like any
    # write, and writes nothing.
    return await client.post(
        ADJUST, json={}, headers={**auth(user, ["admin"]), "Idempotency-Key": key}
    )


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


class TestRateLimit:
    async def test_per_user_limit_with_retry_after(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_user="3/minute")
        async with _client(app) as client:
            statuses = [(await _post(client, "busy", f"k{i}")).status_code for i in range(3)]
            assert statuses == [422, 422, 422]
            limited = await _post(client, "busy", "k4")
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert limited.json()["code"] == "rate_limited"
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert limited.headers["x-request-id"] == limited.json()["request_id"]
            # another user is not affected, and reads are never limited
            assert (await _post(client, "calm", "k1")).status_code == 422
            me = await client.get("/api/v1/me", headers=auth("busy"))
            assert me.status_code == 200

    async def test_per_ip_limit_covers_anonymous_and_all_users(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_ip="2/minute")
        async with _client(app) as client:
            first = await client.post(ADJUST, json={})
            assert first.status_code == 401
            assert (await _post(client, "u1", "a")).status_code == 422
            limited = await _post(client, "u2", "b")
            assert limited.status_code == 429
            assert limited.json()["detail"].endswith("address.")

    async def test_webhooks_are_not_limited(self, app_factory: Any) -> None:
        app = app_factory(rate_limit_enabled=True, rate_limit_per_ip="1/minute")
        async with _client(app) as client:
            for _ in range(3):
                response = await client.post(
                    "/api/v1/webhooks/stripe",
                    content=b"{}",
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code == 400  # refused for its signature, not rate

    def test_declared_in_openapi(self, app_factory: Any) -> None:
        spec = app_factory().openapi()
        assert "429" in spec["paths"]["/api/v1/topups"]["post"]["responses"]
        assert "429" not in spec["paths"]["/api/v1/webhooks/stripe"]["post"]["responses"]
        assert "429" not in spec["paths"]["/api/v1/me/balance"]["get"]["responses"]
