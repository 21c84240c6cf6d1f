"""Subscribe with a saved card as Stripe answers it under ``default_incomplete``.

Stripe does not pay the first invoice of a ``default_incomplete`` subscription by itself,
saved card or not: the subscription is created ``incomplete`` and activates when the
first invoice's PaymentIntent is confirmed. With a card that needs no authentication the
customer's confirmation (Stripe.js, one call, no challenge) pays it, and Stripe's events
make the subscription active. tests/subscriptions/test_subscriptions.py's "without SCA"
case has Stripe answer ``active`` at once instead (as the sandbox does)."""

from __future__ import annotations

import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import emitted, ledger_invariants
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    form_of,
    invoice,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import (
    available,
    ledger_rows,
    mine,
    stripe_state,
    the_row,
)


async def test_saved_card_no_challenge_becomes_active_from_stripes_events(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"  # what Stripe answers under default_incomplete
    user = unique_user()
    response = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert response.status_code == 201, response.text
    body = response.json()
    row = await the_row(session, user)
    form = form_of(billing.router.routes["subscriptions"].calls.last.request)
    assert (form["payment_behavior"], form["default_payment_method"]) == (
        "default_incomplete",
        "pm_card_visa",
    )
    assert (body["status"], body["entitled"]) == ("incomplete", False)
    # The customer confirms the first invoice's PaymentIntent with the saved card.
    assert (body["client_secret"], body["client_secret_type"]) == (
        f"pi_first_{row.id}_secret_abc",
        "payment_intent",
    )

    first = invoice(
        f"in_first_{row.id}",
        stripe_sub=str(row.stripe_subscription_id),
        amount=1_900,
        reason="subscription_create",
        our_id=row.id,
    )
    fee_routes(billing.router, first["id"], fee=85)
    t0 = int(time.time())
    # Stripe's events, the subscription's change first, invoice.paid twice.
    await send(client, "customer.subscription.updated", stripe_state(row, "active"), created=t0)
    for _ in range(2):
        await send(client, "invoice.paid", first, created=t0)
    now = await mine(client, user)
    assert (now["status"], now["entitled"]) == ("active", True)
    assert await ledger_rows(session, first["id"]) == [
        ("subscription_payment", f"stripe:invoice:{first['id']}"),
        ("processing_fee", f"stripe:fee:txn_{first['id']}"),
        ("subscription_credit", f"subscription_credit:{first['id']}"),
    ]
    assert await available(client, user) == 500
    assert [t for t, _ in await emitted(session, user)] == [
        "subscription.created",
        "subscription.updated",
        "invoice.paid",
    ]
    assert await ledger_invariants(session) == []
