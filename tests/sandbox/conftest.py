"""The whole loop in one process: the app in sandbox mode, its gateway's Stripe calls and
the sandbox's webhook deliveries routed back into the same ASGI app (respx), on the
test's rolled-back connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.auth import TokenVerifier
from payments_api.main import create_app
from payments_api.migrations import head_revisions
from payments_api.settings import Environment, Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.helpers import TEST_JWT_SECRET
from tests.sandbox.helpers import BASE_URL, WEBHOOK_PATHS, Sandbox


@pytest.fixture
def sandbox_settings(database_url: str, tmp_path: Path) -> Settings:
    """No Stripe key and no webhook secrets: sandbox mode, as after the README's first
    command (the sandbox's own secret is the only one the webhook routes accept)."""
    return Settings(
        _env_file=None,
        environment=Environment.test,
        database_url=SecretStr(database_url),
        jwt_secret=SecretStr(TEST_JWT_SECRET),
        stripe_secret_key=None,
        stripe_webhook_secrets=[],
        stripe_connect_webhook_secrets=[],
        public_base_url=BASE_URL,
        data_dir=tmp_path / "data",  # where the sandbox keeps its random webhook secret
        stripe_max_network_retries=0,
        connect_sync_stale_after_seconds=3600,
        max_body_bytes=64 * 1024,
        log_json=True,
    )


@pytest.fixture
async def sandbox_gateway(sandbox_settings: Settings) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(sandbox_settings)
    yield gateway
    await gateway.aclose()


@pytest.fixture
def sandbox_app(
    sandbox_settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_gateway: StripeGateway,
) -> FastAPI:
    app = create_app(sandbox_settings)
    app.state.resources = AppState(
        settings=sandbox_settings,
        engine=engine,
        sessionmaker=sessionmaker,
        stripe=sandbox_gateway,
        verifier=TokenVerifier(sandbox_settings),
        migration_heads=frozenset(head_revisions()),
    )
    return app


@pytest.fixture
async def sandbox(
    sandbox_app: FastAPI,
    sandbox_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Sandbox]:
    """A browser-like client of the app, with every outgoing request to the service's
    public URL (the gateway's Stripe calls, the sandbox's webhooks) answered by the app."""
    transport = httpx.ASGITransport(app=sandbox_app, raise_app_exceptions=False)
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as loopback,
    ):
        with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
            driver = Sandbox(client, mock, sessionmaker, sandbox_settings)

            async def forward(request: httpx.Request) -> httpx.Response:
                if request.url.path in WEBHOOK_PATHS and driver.webhook_outage > 0:
                    driver.webhook_outage -= 1  # the service is down for this delivery
                    return httpx.Response(503, text="service unavailable")
                answer = await loopback.request(
                    request.method,
                    request.url,
                    content=request.content,
                    headers=[(k, v) for k, v in request.headers.multi_items() if k != "host"],
                )
                return httpx.Response(
                    answer.status_code, headers=answer.headers, content=answer.content
                )

            mock.route(name="loopback").mock(side_effect=forward)
            yield driver
