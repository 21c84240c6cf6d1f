"""The capture's answer and Stripe's webhooks of the same PaymentIntent at the same moment.

Every request commits on its own connection (``committed_client``): the payee's accept
asks Stripe for the capture after its commit, and Stripe's answer is held until the
webhook (``payment_intent.succeeded``, a redelivered ``amount_capturable_updated``, or
both) is in flight, then released, so both apply concurrently against real row locks.
Whatever the interleaving, the captured money is booked exactly once, the memo of the
authorization is reversed once and the escrow ends ``accepted``/``captured``. The same
for a cancel's release answer against ``payment_intent.canceled``: the memo is reversed
once, the escrow ends ``cancelled``/``released``.

These tests commit: fresh users each time; money is measured on each escrow's own
transactions (other committing tests share the platform accounts).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.orders.models import Order
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event
from tests.orders.test_checkout import URLS, balance, deliver
from tests.orders.test_escrow_manual_capture import HOLD, PRICE, intent_of, new_party
from tests.refunds.helpers import form

WEBHOOKS = {
    "succeeded": ("payment_intent.succeeded",),
    "capturable_again": ("payment_intent.amount_capturable_updated",),
    "both": ("payment_intent.amount_capturable_updated", "payment_intent.succeeded"),
}


async def authorized_escrow(client: httpx.AsyncClient) -> tuple[str, str, Order, str]:
    """A committed 100.00 escrow paid by authorization: (customer, payee, order, pi)."""
    customer, payee = new_party()
    await client.get("/api/v1/me/balance", headers=auth(payee, ["payee"]))  # first seen
    response = await client.post(
        "/api/v1/checkout/sessions",
        json={
            "purpose": "escrow",
            "capture_method": "manual",
            "payee_id": payee,
            "amount": PRICE,
            "currency": "usd",
            "reference": "job-race",
            **URLS,
        },
        headers={**auth(customer, ["customer"]), "Idempotency-Key": f"job-{customer}"},
    )
    assert response.status_code == 201, response.text
    order_id = int(response.json()["order_id"].removeprefix("ord_"))
    order = Order(id=order_id, user_id=customer, amount=HOLD, currency="usd", purpose="escrow")
    pi = f"pi_{uuid.uuid4().hex[:16]}"
    authorization = make_event(
        "payment_intent.amount_capturable_updated", intent_of(order, pi, "requires_capture")
    )
    assert (await deliver(client, authorization)).status_code == 200
    return customer, payee, order, pi


async def count(session: AsyncSession, sql: str, **params: Any) -> int:
    return int(await session.scalar(text(sql), params) or 0)


async def race(
    client: httpx.AsyncClient,
    stripe_payins: respx.MockRouter,
    committed: async_sessionmaker[AsyncSession],
    webhooks: str,
) -> None:
    """One escrow: the accept's capture answer against ``webhooks``; then the checks."""
    customer, payee, order, pi = await authorized_escrow(client)
    escrow = (await client.get("/api/v1/escrows", headers=auth(customer))).json()["data"][0]
    asked, answer = asyncio.Event(), asyncio.Event()

    async def capture(request: httpx.Request) -> httpx.Response:
        asked.set()
        await answer.wait()  # held until the webhooks are on their way
        amount = int(form(request)["amount_to_capture"])
        return httpx.Response(200, json=intent_of(order, pi, "succeeded", amount_received=amount))

    route = stripe_payins.post(f"/v1/payment_intents/{pi}/capture").mock(side_effect=capture)
    events = [
        make_event(
            kind,
            intent_of(order, pi, "succeeded", amount_received=HOLD)
            if kind == "payment_intent.succeeded"
            else intent_of(order, pi, "requires_capture"),
        )
        for kind in WEBHOOKS[webhooks]
    ]

    async def stripe_side() -> list[httpx.Response]:
        await asked.wait()
        # Scheduled before the answer is released (the loop runs them in order), so
        # the webhooks and the capture's answer reach the database together.
        deliveries = [asyncio.ensure_future(deliver(client, e)) for e in events]
        answer.set()
        return list(await asyncio.gather(*deliveries))

    accepted, delivered = await asyncio.wait_for(
        asyncio.gather(
            client.post(
                f"/api/v1/escrows/{escrow['id']}/accept",
                headers={**auth(payee, ["payee"]), "Idempotency-Key": uuid.uuid4().hex},
            ),
            stripe_side(),
        ),
        timeout=60,
    )

    assert accepted.status_code == 200, accepted.text
    assert [r.status_code for r in delivered] == [200] * len(events)
    assert route.call_count == 1
    got = (await client.get(f"/api/v1/escrows/{escrow['id']}", headers=auth(customer))).json()
    assert (got["status"], got["capture_status"]) == ("accepted", "captured")
    wallet = (await balance(client, customer))["usd"]
    assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, PRICE, 0)
    number = int(str(escrow["id"]).removeprefix("esc_"))
    async with committed() as session:
        by_type = (
            await session.execute(
                text(
                    "SELECT type, count(*) FROM ledger_transactions"
                    " WHERE (metadata ->> 'escrow_id')::bigint = :e GROUP BY type"
                ),
                {"e": number},
            )
        ).all()
        assert dict(by_type) == {
            "escrow_authorization": 1,
            "escrow_authorization_captured": 1,
            "escrow_funding": 1,
            "escrow_platform_fee": 1,
        }
        # What this escrow moved at Stripe (other committing tests share the account).
        moved = await count(
            session,
            "SELECT sum(p.amount) FROM ledger_postings p"
            " JOIN ledger_accounts a ON a.id = p.account_id"
            " JOIN ledger_transactions t ON t.id = p.transaction_id"
            " WHERE a.kind = 'stripe_balance' AND (t.metadata ->> 'escrow_id')::bigint = :e",
            e=number,
        )
        assert moved == -HOLD
        events_of = await count(
            session,
            "SELECT count(*) FROM events WHERE :u = ANY(user_ids)"
            " AND type IN ('escrow.funded', 'escrow.accepted')",
            u=customer,
        )
        assert events_of == 2  # one funded, one accepted
        assert (
            await count(
                session,
                "SELECT count(*) FROM orders WHERE user_id = :u AND status = 'succeeded'",
                u=customer,
            )
            == 1
        )
        assert await ledger_invariants(session) == []


class TestCaptureRacesItsWebhook:
    @pytest.mark.parametrize("webhooks", list(WEBHOOKS), ids=list(WEBHOOKS))
    async def test_money_is_booked_once(
        self,
        committed_client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        engine: AsyncEngine,
        webhooks: str,
    ) -> None:
        # Three escrows racing at once: more interleavings of the same two paths per run
        # (one alone hit the lock-order deadlock in about two runs of three).
        committed = async_sessionmaker(engine, expire_on_commit=False)
        await asyncio.gather(
            *(race(committed_client, stripe_payins, committed, webhooks) for _ in range(3))
        )


async def release_race(
    client: httpx.AsyncClient,
    stripe_payins: respx.MockRouter,
    committed: async_sessionmaker[AsyncSession],
) -> None:
    """One escrow: the cancel's release answer against ``payment_intent.canceled``."""
    customer, _payee, order, pi = await authorized_escrow(client)
    escrow = (await client.get("/api/v1/escrows", headers=auth(customer))).json()["data"][0]
    asked, answer = asyncio.Event(), asyncio.Event()
    canceled = intent_of(order, pi, "canceled", cancellation_reason="requested_by_customer")

    async def cancel(request: httpx.Request) -> httpx.Response:
        asked.set()
        await answer.wait()
        return httpx.Response(200, json=canceled)

    route = stripe_payins.post(f"/v1/payment_intents/{pi}/cancel").mock(side_effect=cancel)

    async def stripe_side() -> httpx.Response:
        await asked.wait()
        delivery = asyncio.ensure_future(
            deliver(client, make_event("payment_intent.canceled", canceled))
        )
        answer.set()
        return await delivery

    cancelled, delivered = await asyncio.wait_for(
        asyncio.gather(
            client.post(
                f"/api/v1/escrows/{escrow['id']}/cancel",
                json={},
                headers={**auth(customer, ["customer"]), "Idempotency-Key": uuid.uuid4().hex},
            ),
            stripe_side(),
        ),
        timeout=60,
    )

    assert cancelled.status_code == 200, cancelled.text
    assert delivered.status_code == 200, delivered.text
    assert route.call_count == 1
    got = (await client.get(f"/api/v1/escrows/{escrow['id']}", headers=auth(customer))).json()
    assert (got["status"], got["capture_status"]) == ("cancelled", "released")
    assert "usd" not in await balance(client, customer)
    number = int(str(escrow["id"]).removeprefix("esc_"))
    async with committed() as session:
        by_type = (
            await session.execute(
                text(
                    "SELECT type, count(*) FROM ledger_transactions"
                    " WHERE (metadata ->> 'escrow_id')::bigint = :e GROUP BY type"
                ),
                {"e": number},
            )
        ).all()
        assert dict(by_type) == {"escrow_authorization": 1, "escrow_authorization_released": 1}
        released = await count(
            session,
            "SELECT count(*) FROM events WHERE :u = ANY(user_ids)"
            " AND type = 'escrow.authorization_released'",
            u=customer,
        )
        assert released == 1
        assert await ledger_invariants(session) == []


class TestReleaseRacesItsWebhook:
    async def test_the_memo_is_reversed_once(
        self,
        committed_client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        engine: AsyncEngine,
    ) -> None:
        committed = async_sessionmaker(engine, expire_on_commit=False)
        await asyncio.gather(
            *(release_race(committed_client, stripe_payins, committed) for _ in range(3))
        )
