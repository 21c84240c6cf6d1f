"""The balance read and the earnings page as they run in production: on a connection
checked out of the engine's pool (``db.read_connection``), with no ORM session or
transaction, given back to the pool when the read ends, and replaced when it may be
broken."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.db import create_engine, read_connection
from payments_api.settings import Settings
from tests.helpers import auth


@pytest.fixture
async def own_engine(database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own, so its pool's counts are the test's alone."""
    engine = create_engine(database_url, settings.model_copy(update={"db_pool_size": 2}))
    yield engine
    await engine.dispose()


@pytest.fixture
def own_sessions(own_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(own_engine, expire_on_commit=False)


@pytest.fixture
async def pooled_client(
    app_factory: Any, own_sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = app_factory()
    app.state.resources.sessionmaker = own_sessions
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_balance_reads_on_a_pooled_connection_and_gives_it_back(
    pooled_client: httpx.AsyncClient, own_engine: AsyncEngine
) -> None:
    user = f"pool-{uuid.uuid4().hex[:10]}"
    first = await pooled_client.get("/api/v1/me/balance", headers=auth(user, email="a@b.example"))
    assert first.status_code == 200, first.text
    assert first.json() == {"object": "balance", "balances": [], "frozen": False}
    # Provisioned on first sight, committed: the next read finds the row.
    async with own_engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT roles, email FROM users WHERE id = :id"), {"id": user}
            )
        ).one()
    assert (row.roles, row.email) == (["customer"], "a@b.example")
    again = await pooled_client.get("/api/v1/me/balance", headers=auth(user, email="a@b.example"))
    assert again.json() == first.json()
    assert own_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_earnings_page_reads_without_an_orm_session(
    pooled_client: httpx.AsyncClient, own_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = f"earn-{uuid.uuid4().hex[:10]}"
    headers = auth(user, roles=["payee"], email="p@b.example")
    first = await pooled_client.get("/api/v1/me/earnings", headers=headers)
    assert first.status_code == 200, first.text
    assert (first.json()["data"], first.json()["summary"]) == ([], [])
    async with own_engine.connect() as connection:  # provisioned on first sight, committed
        roles = await connection.scalar(
            text("SELECT roles FROM users WHERE id = :id"), {"id": user}
        )
    assert roles == ["payee"]
    sessions: list[AsyncSession] = []
    opened = AsyncSession.__init__

    def counting(self: AsyncSession, *args: Any, **kwargs: Any) -> None:
        sessions.append(self)
        opened(self, *args, **kwargs)

    monkeypatch.setattr(AsyncSession, "__init__", counting)
    again = await pooled_client.get("/api/v1/me/earnings", headers=headers)
    assert again.status_code == 200, again.text
    assert sessions == []
    assert own_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_read_sends_no_begin(
    own_sessions: async_sessionmaker[AsyncSession], own_engine: AsyncEngine
) -> None:
    async with read_connection(own_sessions) as connection:
        assert not connection.is_in_transaction()
        assert await connection.fetchval("SELECT 41 + 1") == 42
        assert not connection.is_in_transaction()
    assert own_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_server_error_keeps_the_connection(
    own_sessions: async_sessionmaker[AsyncSession], own_engine: AsyncEngine
) -> None:
    async with read_connection(own_sessions) as connection:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with read_connection(own_sessions) as connection:
            await connection.fetchval("SELECT 1 / 0")
    async with read_connection(own_sessions) as connection:
        assert await connection.fetchval("SELECT pg_backend_pid()") == backend
    assert own_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_lost_connection_is_replaced(
    own_sessions: async_sessionmaker[AsyncSession], own_engine: AsyncEngine
) -> None:
    async with read_connection(own_sessions) as connection:
        backend = await connection.fetchval("SELECT pg_backend_pid()")

    async def read_on_a_dropped_connection() -> None:
        async with read_connection(own_sessions) as connection:
            connection.terminate()  # as a dropped network connection would leave it
            await connection.fetchval("SELECT 1")

    with pytest.raises(asyncpg.InterfaceError):
        await read_on_a_dropped_connection()
    async with read_connection(own_sessions) as connection:
        assert await connection.fetchval("SELECT pg_backend_pid()") != backend
    assert own_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
