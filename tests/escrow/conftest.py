"""Escrow test fixtures: a committing app for the concurrency tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from payments_api.main import create_app
from payments_api.state import AppState

# Enough connections for real contention on row locks, few enough that the suite stays
# well inside the server's max_connections while other suites run beside it; requests
# beyond it wait for a connection, still all in flight at once.
LIVE_POOL_SIZE = 12


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on their own connections that commit for real."""
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def live_client(state: AppState, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests each run in their own committed transaction, so
    concurrent requests contend on real row locks."""
    engine = create_async_engine(
        database_url, pool_size=LIVE_POOL_SIZE, max_overflow=0, pool_timeout=120
    )
    app = create_app(state.settings)
    app.state.resources = AppState(
        settings=state.settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        stripe=state.stripe,
        verifier=state.verifier,
        migration_heads=state.migration_heads,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await engine.dispose()
