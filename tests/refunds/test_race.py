"""The API's answer and Stripe's webhook for the same refund, in every order: the
ledger moves exactly once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund
from tests.factories import create_user, ledger_invariants
from tests.helpers import make_event, stripe_object
from tests.refunds.helpers import (
    ADMIN,
    cause_count,
    deliver,
    paid_order,
    refund_from_request,
    reload,
    wallet,
)

REFUNDS = "/api/v1/admin/refunds"


class TestWebhookBeforeApiResponse:
    async def test_event_applied_first_then_the_answer_changes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        deliveries: list[httpx.Response] = []

        async def stripe_refunds_then_emits_its_event(request: httpx.Request) -> httpx.Response:
            created = refund_from_request(request, status="succeeded", currency="usd")
            # Stripe's webhook reaches us while our API call is still waiting for the answer.
            deliveries.append(await deliver(client, make_event("refund.created", created)))
            return httpx.Response(200, json=created)

        stripe_mock.post("/v1/refunds").mock(side_effect=stripe_refunds_then_emits_its_event)

        response = await client.post(
            REFUNDS,
            json={"order_id": f"ord_{order.id}", "amount": 1_200},
            headers={**ADMIN, "Idempotency-Key": "race-1"},
        )

        assert response.status_code == 201, response.text
        assert [d.json()["status"] for d in deliveries] == ["processed"]
        body = response.json()
        assert body["status"] == "succeeded"
        assert await cause_count(session, f"stripe:refund:{body['stripe_refund_id']}") == 1
        assert await wallet(session, order.user_id) == {
            "available": 800,
            "escrow": 0,
            "withdrawing": 0,
        }
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 1_200)
        assert await ledger_invariants(session) == []


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def live_order(
    committed_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
) -> Order:
    """A committed, paid top-up of a fresh customer in a currency of these tests (nok)."""
    user_id = f"race_{uuid.uuid4().hex[:10]}"
    payment_intent = f"pi_race_{uuid.uuid4().hex[:10]}"
    async with committed.begin() as session:
        await create_user(session, id=user_id)
        order = Order(
            user_id=user_id,
            purpose="topup",
            channel="payment_intent",
            status="pending",
            amount=10_000,
            currency="nok",
            idempotency_key=uuid.uuid4().hex,
            request_fingerprint="0" * 64,
            stripe_payment_intent_id=payment_intent,
            reference={},
        )
        session.add(order)
    intent = stripe_object("payment_intent")
    intent.update(
        id=payment_intent,
        amount=10_000,
        amount_received=10_000,
        currency="nok",
        status="succeeded",
        latest_charge=None,
        metadata={"order_id": str(order.id), "user_id": user_id, "purpose": "topup"},
    )
    paid = await deliver(committed_client, make_event("payment_intent.succeeded", intent))
    assert paid.json()["status"] == "processed", paid.text
    return order


class TestConcurrentAnswerAndWebhook:
    async def test_five_refunds_each_settled_once_under_real_concurrency(
        self,
        committed_client: httpx.AsyncClient,
        committed: async_sessionmaker[AsyncSession],
        stripe_mock: respx.MockRouter,
        live_order: Order,
    ) -> None:
        webhooks: list[asyncio.Task[httpx.Response]] = []
        event_types = ["refund.created", "refund.updated", "charge.refunded"]

        async def stripe_refunds_and_races_its_webhook(request: httpx.Request) -> httpx.Response:
            created = refund_from_request(request, status="succeeded", currency="nok")
            kind = event_types[len(webhooks) % len(event_types)]
            payload: dict[str, Any] = created
            if kind == "charge.refunded":
                payload = stripe_object("charge")
                payload.update(
                    id=f"ch_{created['id']}",
                    currency="nok",
                    payment_intent=created["payment_intent"],
                    refunds={"object": "list", "data": [created], "has_more": False},
                )
            # The event is delivered on its own connection while the API records the
            # answer on another: both commit for real and race for the same rows.
            webhooks.append(
                asyncio.create_task(deliver(committed_client, make_event(kind, payload)))
            )
            await asyncio.sleep(0)
            return httpx.Response(200, json=created)

        stripe_mock.post("/v1/refunds").mock(side_effect=stripe_refunds_and_races_its_webhook)

        # The five refunds run at once (each request on its own pooled connection), and
        # each races its own webhook: ten transactions contend for the order's rows.
        responses = await asyncio.gather(
            *(
                committed_client.post(
                    REFUNDS,
                    json={"order_id": f"ord_{live_order.id}", "amount": 1_000 + i},
                    headers={**ADMIN, "Idempotency-Key": f"race-{uuid.uuid4().hex}"},
                )
                for i in range(5)
            )
        )
        delivered = await asyncio.gather(*webhooks)

        assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
        assert all(d.status_code == 200 for d in delivered), [d.text for d in delivered]
        total = sum(1_000 + i for i in range(5))
        async with committed() as session:
            for response in responses:
                stripe_id = response.json()["stripe_refund_id"]
                assert await cause_count(session, f"stripe:refund:{stripe_id}") == 1
            rows = (
                await session.scalars(select(Refund).where(Refund.order_id == live_order.id))
            ).all()
            assert sorted(r.status for r in rows) == ["succeeded"] * 5
            assert await wallet(session, live_order.user_id, "nok") == {
                "available": 10_000 - total,
                "escrow": 0,
                "withdrawing": 0,
            }
            order = await reload(session, live_order)
            assert (order.status, order.refunded_amount) == ("partially_refunded", total)
            drift = await session.scalar(
                text(
                    """
                    SELECT count(*) FROM ledger_accounts a
                    WHERE a.owner_user_id = :user AND
                      (SELECT coalesce(sum(balance), 0) FROM ledger_balances b
                       WHERE b.account_id = a.id)
                      <> (SELECT coalesce(sum(amount), 0) FROM ledger_postings p
                          WHERE p.account_id = a.id)
                    """
                ),
                {"user": live_order.user_id},
            )
            assert drift == 0
