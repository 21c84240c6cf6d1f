"""Two databases on one Stripe account never send Stripe the same idempotency key.

A recreated development database, a staging copy or a restored backup used to send
``payment_intent:1`` again; each database now has a random namespace (made by its
migration, shown in /readyz) in front of every outgoing key. Here the same user makes
the same top-up against two databases that share one Stripe stand-in (respx).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from payments_api.auth import TokenVerifier
from payments_api.installation import OutgoingKeys
from payments_api.main import create_app
from payments_api.migrations import head_revisions
from payments_api.settings import Settings
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.db_setup import create_named_database, drop_test_database
from tests.helpers import auth


@pytest.fixture
def second_database() -> Iterator[str]:
    url = create_named_database(f"payments_second_{uuid.uuid4().hex[:12]}")
    yield url
    drop_test_database(url)


@pytest.fixture
async def two_services(
    database_url: str, second_database: str, settings: Settings, gateway: StripeGateway
) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients, engines = [], []
    for url in (database_url, second_database):
        engine = create_async_engine(url, pool_size=2, max_overflow=0)
        engines.append(engine)
        app = create_app(settings)
        app.state.resources = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            stripe=gateway,
            verifier=TokenVerifier(settings),
            migration_heads=frozenset(head_revisions()),
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
    yield clients
    for client in clients:
        await client.aclose()
    for engine in engines:
        await engine.dispose()


async def test_the_same_top_up_on_two_databases_sends_disjoint_keys(
    two_services: list[httpx.AsyncClient], stripe_payins: respx.MockRouter
) -> None:
    user = f"twin-{uuid.uuid4().hex[:8]}"
    sent: list[set[str]] = []
    namespaces: list[str] = []
    for client in two_services:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        namespace: Any = ready.json()["key_namespace"]
        assert isinstance(namespace, str)
        assert len(namespace) == 16
        namespaces.append(namespace)
        before = len(stripe_payins.calls)
        response = await client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "eur"},
            headers={**auth(user), "Idempotency-Key": "same-key"},
        )
        assert response.status_code == 201, response.text
        keys = {call.request.headers["Idempotency-Key"] for call in stripe_payins.calls[before:]}
        sent.append(keys)

    assert namespaces[0] != namespaces[1]
    assert sent[0].isdisjoint(sent[1])
    for namespace, keys in zip(namespaces, sent, strict=True):
        assert len(keys) == 2  # the customer and the PaymentIntent
        assert all(key.startswith(f"{namespace}:") for key in keys), keys


def test_rows_older_than_the_namespace_keep_their_key() -> None:
    keys = OutgoingKeys(namespace="n1", legacy_ceilings={"withdrawal": 11})
    assert keys.derive("withdrawal", 11) == "withdrawal:11"  # in flight before the upgrade
    assert keys.derive("withdrawal", 12) == "n1:withdrawal:12"
    assert keys.derive("refund", 1) == "n1:refund:1"
    assert keys.derive("customer", "u1") == "n1:customer:u1"
