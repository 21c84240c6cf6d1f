"""Concurrent first calls on the real database: separate connections, real commits.

These tests commit, so they use fresh users and delete what they wrote.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.auth import TokenVerifier
from payments_api.main import create_app
from payments_api.migrations import head_revisions
from payments_api.payout_accounts import service as connect_service
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.settings import Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.models import User
from tests.factories import create_user
from tests.helpers import auth, stripe_key
from tests.payout_accounts import shapes

ONBOARDING = "/api/v1/me/payout-account/onboarding-link"


async def _lock_waiters(committed: async_sessionmaker[AsyncSession], count: int) -> None:
    """Returns once ``count`` backends of this database wait for a lock."""
    while True:
        async with committed() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        if (waiting or 0) >= count:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def committed_client(
    settings: Settings,
    engine: AsyncEngine,
    committed: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the real engine: every request is its own committed transaction."""
    app = create_app(settings)
    app.state.resources = AppState(
        settings=settings,
        engine=engine,
        sessionmaker=committed,
        stripe=gateway,
        verifier=TokenVerifier(settings),
        migration_heads=frozenset(head_revisions()),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def committed_payee(committed: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    async with committed.begin() as session:
        user = await create_user(session, id=f"cpayee_{uuid.uuid4().hex[:12]}", roles=["payee"])
    yield user.id
    async with committed.begin() as session:
        await session.execute(delete(PayoutAccount).where(PayoutAccount.user_id == user.id))
        await session.execute(delete(User).where(User.id == user.id))


class TestConcurrentOnboarding:
    async def test_ten_concurrent_first_calls_create_one_express_account(
        self,
        committed_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        committed_payee: str,
        stripe_mock: respx.MockRouter,
    ) -> None:
        account_id = f"acct_{uuid.uuid4().hex[:16]}"
        in_flight = 0
        most_in_flight = 0

        async def create_account(request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, most_in_flight
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            if in_flight == 1:
                # Stripe answers only once the nine twins are all waiting on the row
                # lock this call holds, so they really pile up behind it.
                await asyncio.wait_for(_lock_waiters(committed, 9), timeout=8)
            in_flight -= 1
            return httpx.Response(200, json=shapes.fresh_account(account_id, committed_payee))

        accounts = stripe_mock.post("/v1/accounts").mock(side_effect=create_account)
        links = stripe_mock.post("/v1/account_links").mock(
            side_effect=lambda request: httpx.Response(
                200, json=shapes.account_link(f"https://connect.stripe.com/{uuid.uuid4().hex}")
            )
        )
        headers = auth(committed_payee, ["payee"])

        responses = await asyncio.gather(
            *(committed_client.post(ONBOARDING, headers=headers) for _ in range(10))
        )

        assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
        assert accounts.call_count == 1
        assert most_in_flight == 1
        assert {c.request.headers["Idempotency-Key"] for c in accounts.calls} == {
            stripe_key("account", committed_payee)
        }
        bodies = [r.json() for r in responses]
        assert {b["payout_account"]["stripe_account_id"] for b in bodies} == {account_id}
        assert len({b["url"] for b in bodies}) == 10  # a fresh link for every call
        assert links.call_count == 10
        async with committed() as session:
            rows = await session.scalar(
                select(func.count())
                .select_from(PayoutAccount)
                .where(PayoutAccount.user_id == committed_payee)
            )
        assert rows == 1

    async def test_a_call_that_waits_too_long_gets_409_busy(
        self,
        committed_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        committed_payee: str,
        stripe_mock: respx.MockRouter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(
            connect_service, "_CREATION_LOCK_TIMEOUT", text("SET LOCAL lock_timeout = '200ms'")
        )
        accounts = stripe_mock.post("/v1/accounts")
        # Another request holds the first call's row, still uncommitted.
        async with committed() as holder:
            await holder.begin()
            await holder.execute(insert(PayoutAccount).values(user_id=committed_payee))
            response = await committed_client.post(
                ONBOARDING, headers=auth(committed_payee, ["payee"])
            )
            await holder.rollback()
        assert response.status_code == 409
        assert response.json()["code"] == "payout_account_busy"
        assert response.headers["Retry-After"] == "2"
        assert not accounts.called
