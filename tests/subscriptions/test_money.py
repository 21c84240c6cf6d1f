"""A year of renewals, and invoice.paid delivered concurrently: the credit stays exact."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.subscriptions.models import PlanPrice, PlanProduct, Subscription
from payments_api.users.models import User
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event
from tests.subscriptions.conftest import (
    FakeBilling,
    deliver,
    fee_routes,
    invoice,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import available, the_row


async def test_a_year_of_monthly_renewals(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    user = unique_user()
    await subscribe(client, user, "price_pro")
    row = await the_row(session, user)
    start = int(time.time())
    for month in range(12):
        paid = invoice(
            f"in_{row.id}_m{month}", stripe_sub=str(row.stripe_subscription_id), amount=1900
        )
        fee_routes(billing.router, paid["id"], fee=85, charge=f"ch_m{month}")
        for _ in range(2):  # every renewal's event delivered twice
            await send(client, "invoice.paid", paid, created=start + month * 30 * 86400)
    assert await available(client, user) == 12 * 500
    counts = await session.execute(
        text(
            "SELECT type, count(*) AS n, sum(p.amount) AS total FROM ledger_transactions t"
            " JOIN ledger_postings p ON p.transaction_id = t.id"
            " JOIN ledger_accounts a ON a.id = p.account_id"
            " WHERE t.cause_key LIKE :pattern AND a.kind = 'sales' GROUP BY type ORDER BY type"
        ),
        {"pattern": f"%in_{row.id}_m%"},
    )
    assert [(r.type, r.n, r.total) for r in counts] == [
        ("subscription_credit", 12, -12 * 500),
        ("subscription_payment", 12, 12 * 1900),
    ]
    assert await ledger_invariants(session) == []


async def test_concurrent_deliveries_credit_once(
    committed_client: httpx.AsyncClient, engine: AsyncEngine, stripe_mock: respx.MockRouter
) -> None:
    tag = uuid.uuid4().hex[:10]
    user, price_id, stripe_sub = f"u_{tag}", f"price_{tag}", f"sub_{tag}"
    committed = async_sessionmaker(engine, expire_on_commit=False)
    async with committed.begin() as session:
        session.add(User(id=user, roles=["customer"]))
        # Archived, so the committed plan never shows in other tests' plan lists.
        session.add(
            PlanProduct(
                stripe_product_id=f"prod_{tag}",
                name="Concurrent",
                active=False,
                features=[],
                metadata_={},
                family=f"f_{tag}",
                stripe_state_at=0,
            )
        )
        session.add(
            PlanPrice(
                stripe_price_id=price_id,
                stripe_product_id=f"prod_{tag}",
                active=False,
                unit_amount=1900,
                currency="usd",
                interval="month",
                interval_count=1,
                metadata_={"monthly_credit": "700"},
                monthly_credit=700,
                stripe_state_at=0,
            )
        )
        await session.flush()
        subscription = Subscription(
            user_id=user,
            stripe_price_id=price_id,
            family=f"f_{tag}",
            status="active",
            idempotency_key="k",
            request_fingerprint="f",
            stripe_subscription_id=stripe_sub,
            cancel_at_period_end=False,
        )
        session.add(subscription)
    paid = invoice(f"in_{tag}", stripe_sub=stripe_sub, amount=1900, our_id=subscription.id)
    fee_routes(stripe_mock, paid["id"], fee=85, charge=f"ch_{tag}")
    responses = await asyncio.gather(
        *(deliver(committed_client, make_event("invoice.paid", paid)) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    balance = (await committed_client.get("/api/v1/me/balance", headers=auth(user))).json()
    assert [(b["currency"], b["available"]) for b in balance["balances"]] == [("usd", 700)]
    async with committed() as session:
        credits = await session.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE cause_key = :key"),
            {"key": f"subscription_credit:in_{tag}"},
        )
        assert credits == 1
