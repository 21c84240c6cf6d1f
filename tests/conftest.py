from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from payments_api.auth import TokenVerifier
from payments_api.main import create_app
from payments_api.migrations import head_revisions
from payments_api.money import CurrencyLimits, OperationLimits
from payments_api.settings import Environment, Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.db_setup import create_test_database, drop_test_database
from tests.helpers import TEST_JWT_SECRET

pytest_plugins = ["tests.problem_codes"]

STRIPE_API = "https://api.stripe.com"
TEST_WEBHOOK_SECRET = "whsec_test_platform"
TEST_CONNECT_WEBHOOK_SECRET = "whsec_test_connect"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = create_test_database()
    yield url
    # Nothing left behind on a shared server once the session is over.
    drop_test_database(url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # At most TEST_DB_POOL_MAX connections per test process (default 16): enough for the
    # concurrency tests to contend on real row locks (their extra tasks queue for a
    # connection), small enough that `pytest -n 2` fits a shared server's max_connections.
    # The escrow live client adds its own 12 while its tests run.
    limit = int(os.environ.get("TEST_DB_POOL_MAX", "16"))
    engine = create_async_engine(
        database_url, pool_size=min(limit, 4), max_overflow=max(limit - 4, 0), pool_timeout=120
    )
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session", autouse=True)
async def _outgoing_keys(engine: AsyncEngine) -> None:
    """Expected Stripe idempotency keys carry the test database's namespace."""
    from payments_api.installation import outgoing_keys
    from tests import helpers

    helpers.OUTGOING_KEYS = await outgoing_keys(async_sessionmaker(engine))


# Currencies the suites use beyond the built-in limits (usd, eur, gbp, jpy, kwd): the
# SPEC's 10.00-10,000.00 of the major unit for each operation. Others (e.g. cad) have
# none and are refused with currency_not_supported.
TEST_AMOUNT_LIMITS = {
    code: CurrencyLimits(
        topup=OperationLimits(min=Decimal(10), max=Decimal(10_000)),
        debit=OperationLimits(min=Decimal(1), max=Decimal(10_000)),
        withdrawal=OperationLimits(min=Decimal(10), max=Decimal(10_000)),
    )
    for code in ("chf", "hkd", "huf", "isk", "nok", "sek", "sgd", "twd")
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.test,
        database_url=SecretStr(database_url),
        jwt_secret=SecretStr(TEST_JWT_SECRET),
        stripe_secret_key=SecretStr("sk_test_123"),
        stripe_webhook_secrets=[SecretStr(TEST_WEBHOOK_SECRET)],
        stripe_connect_webhook_secrets=[SecretStr(TEST_CONNECT_WEBHOOK_SECRET)],
        stripe_api_base=STRIPE_API,
        stripe_max_network_retries=0,
        max_body_bytes=64 * 1024,
        log_json=True,
        # Off by default so concurrency and fuzz tests measure what they mean to;
        # tests/kit/test_ratelimit.py turns it on.
        rate_limit_enabled=False,
        amount_limits=TEST_AMOUNT_LIMITS,
    )


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The test's outer transaction: everything a test writes is rolled back."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(settings)
    yield gateway
    await gateway.aclose()


@pytest.fixture
def stripe_mock() -> Iterator[respx.MockRouter]:
    """Every outgoing HTTP call is intercepted; an unmocked Stripe call fails the test."""
    with respx.mock(base_url=STRIPE_API, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def state(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
) -> AppState:
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        stripe=gateway,
        verifier=TokenVerifier(settings),
        migration_heads=frozenset(head_revisions()),
    )


@pytest.fixture
def app_factory(state: AppState):  # type: ignore[no-untyped-def]
    def build(**overrides: object):  # type: ignore[no-untyped-def]
        settings = state.settings.model_copy(update=overrides) if overrides else state.settings
        app = create_app(settings)
        app.state.resources = AppState(
            settings=settings,
            engine=state.engine,
            sessionmaker=state.sessionmaker,
            stripe=state.stripe,
            verifier=TokenVerifier(settings),
            migration_heads=state.migration_heads,
        )
        return app

    return build


@pytest.fixture
async def client(app_factory) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = app_factory()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def committed_client(
    app_factory: Any, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests commit for real (for concurrency tests)."""
    probe = app_factory()
    state: AppState = probe.state.resources
    app = create_app(state.settings)
    app.state.resources = AppState(
        settings=state.settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        stripe=state.stripe,
        verifier=TokenVerifier(state.settings),
        migration_heads=state.migration_heads,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
