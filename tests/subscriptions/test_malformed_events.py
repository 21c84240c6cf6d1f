"""A subscription or invoice event whose object does not fit Stripe's shape is recorded
failed and acknowledged ``malformed``: never applied, never retried."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import emitted
from tests.helpers import make_event
from tests.subscriptions.conftest import (
    FakeBilling,
    deliver,
    invoice,
    seed_plans,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import available, ledger_rows, stripe_state, the_row
from tests.webhooks.malformed import apply_jobs_queued, assert_recorded_malformed


async def test_a_malformed_subscription_or_invoice_is_recorded_and_never_applied(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    user = unique_user()
    assert (await subscribe(client, user, "price_pro")).status_code == 201
    row = await the_row(session, user)
    before = (row.status, row.cancel_at_period_end, row.canceled_at, row.stripe_state_at)
    canceled = stripe_state(row, "canceled")
    canceled["cancel_at_period_end"] = "soon"  # not what Stripe sends: a boolean
    renewal = invoice("in_malformed", stripe_sub=str(row.stripe_subscription_id), amount=1900)
    renewal["amount_paid"] = "1900 cents"  # not what Stripe sends: an integer
    cases = [
        (
            make_event("customer.subscription.deleted", canceled),
            "MalformedStripeObject: Subscription without the expected cancel_at_period_end",
        ),
        (
            make_event("invoice.paid", renewal),
            "MalformedStripeObject: Invoice without the expected amount_paid",
        ),
    ]

    for event, error in cases:
        for _ in range(2):  # Stripe's redelivery of the same payload: the same answer
            response = await deliver(client, event)
            assert response.status_code == 200, response.text
            assert response.json() == {"received": True, "status": "malformed"}
        await assert_recorded_malformed(session, event["id"], error)

    assert await apply_jobs_queued(session) == 0
    row = await the_row(session, user)
    assert (row.status, row.cancel_at_period_end, row.canceled_at, row.stripe_state_at) == before
    assert row.status == "active"
    invoices = await session.scalar(
        text("SELECT count(*) FROM subscription_invoices WHERE stripe_invoice_id = 'in_malformed'")
    )
    assert invoices == 0
    assert await ledger_rows(session, "in_malformed") == []
    assert await available(client, user) == 0
    assert [t for t, _ in await emitted(session, user)] == ["subscription.created"]
