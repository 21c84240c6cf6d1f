"""A paid event is credited for what was ordered, never for what the event says.

A Checkout Session or PaymentIntent whose amount or currency differs from its order
credits nothing: the order goes to ``needs_review`` with the reason, an admin lists it,
and a metric counts it. Replayed deliveries change nothing more.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.models import LedgerTransaction
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event
from tests.orders.test_checkout import (
    balance,
    completed_session,
    deliver,
    start_checkout,
    succeeded_intent,
    the_order,
    topup,
)

ADMIN = auth("review-admin", ["admin"])


def _reviews(reason: str) -> float:
    value = REGISTRY.get_sample_value("payments_payins_needing_review_total", {"reason": reason})
    return value or 0.0


async def _transactions(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)


@pytest.mark.parametrize(
    ("event_type", "change", "reason"),
    [
        ("checkout.session.completed", {"amount_total": 200_000}, "amount_mismatch"),
        ("checkout.session.completed", {"currency": "eur"}, "currency_mismatch"),
        ("payment_intent.succeeded", {"amount_received": 1}, "amount_mismatch"),
        ("payment_intent.succeeded", {"currency": "jpy"}, "currency_mismatch"),
    ],
)
async def test_a_paid_event_that_differs_from_the_order_credits_nothing(
    client: httpx.AsyncClient,
    stripe_payins: respx.MockRouter,
    session: AsyncSession,
    event_type: str,
    change: dict[str, Any],
    reason: str,
) -> None:
    user = f"mismatch-{reason}-{event_type.split('.')[0]}"
    await start_checkout(client, user, topup(2_000))
    order = await the_order(session, user)
    data = (
        completed_session(order, payment_intent=f"pi_{user}")
        if event_type.startswith("checkout")
        else succeeded_intent(order, f"pi_{user}")
    )
    data.update(change)
    before_metric, before_rows = _reviews(reason), await _transactions(session)

    event = make_event(event_type, data)
    for _ in range(2):  # a redelivery changes nothing more
        response = await deliver(client, event)
        assert response.status_code == 200, response.text

    assert await _transactions(session) == before_rows
    assert "usd" not in await balance(client, user)
    order = await the_order(session, user)
    assert order.status == "needs_review"
    assert order.review_reason == reason
    assert _reviews(reason) == before_metric + 1
    listed = await client.get("/api/v1/admin/orders/needs-review", headers=ADMIN)
    assert listed.status_code == 200
    [shown] = [o for o in listed.json()["data"] if o["id"] == f"ord_{order.id}"]
    assert shown["review_reason"] == reason
    assert shown["amount"] == 2_000
    assert (shown["paid_amount"], shown["paid_currency"]) == (
        data.get("amount_total") if event_type.startswith("checkout") else data["amount_received"],
        data["currency"],
    )
    assert await ledger_invariants(session) == []


async def test_the_review_list_is_for_admins(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/admin/orders/needs-review", headers=auth("someone"))
    assert response.status_code == 403
