from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class TestHealth:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_when_migrated(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["migrations"] == "current"

    async def test_readyz_not_ready_when_behind(
        self, client: httpx.AsyncClient, app_factory: object, session: AsyncSession
    ) -> None:
        app = client._transport.app  # type: ignore[attr-defined]
        app.state.resources.migration_heads = frozenset({"some_future_revision"})
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_ready"
        assert response.json()["migrations"] == "behind"
        assert response.headers["retry-after"] == "5"
        # the database itself is untouched
        assert await session.scalar(text("SELECT count(*) FROM alembic_version")) == 1

    async def test_metrics(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "payments_http_requests_total" in response.text
