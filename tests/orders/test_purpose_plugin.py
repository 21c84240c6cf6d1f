"""The purpose seam is real: a purpose defined here (one class, one registration) gets
its hooks run by the real webhook path, from a signed Stripe event to the order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.types import EventType
from payments_api.orders.models import Order
from payments_api.orders.purposes import PURPOSES, BasePurpose, PaidPayment
from tests.factories import create_user
from tests.helpers import make_event
from tests.orders.test_checkout import deliver, succeeded_intent

FAKE = "fake_gift"


@dataclass
class FakeGiftPurpose(BasePurpose):
    """Remembers what it was told instead of booking money."""

    name: str = FAKE
    paid_event: EventType = EventType.order_paid
    paid: list[tuple[int, str, int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        self.paid.append((order.id, payment.payment_intent_id, payment.amount, payment.currency))

    async def on_failed(self, session: AsyncSession, order: Order) -> None:
        self.failed.append((order.id, order.status))


async def _pending_order(session: AsyncSession, amount: int) -> Order:
    user = await create_user(session, id=f"gift_{uuid.uuid4().hex[:10]}")
    order = Order(
        user_id=user.id,
        purpose=FAKE,
        channel="payment_intent",
        status="pending",
        amount=amount,
        currency="usd",
        reference={},
        idempotency_key=f"gift-{uuid.uuid4().hex}",
        request_fingerprint="gift",
    )
    session.add(order)
    await session.commit()
    await session.refresh(order)
    return order


async def test_a_paid_order_of_a_registered_purpose_runs_its_hook_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    purpose = FakeGiftPurpose()
    with PURPOSES.registered(purpose):
        order = await _pending_order(session, 1_500)
        pi = f"pi_gift_{order.id}"
        event = make_event("payment_intent.succeeded", succeeded_intent(order, pi))
        for _ in range(2):  # a redelivery is the same event: applied once
            response = await deliver(client, event)
            assert response.status_code == 200, response.text

    assert purpose.paid == [(order.id, pi, 1_500, "usd")]
    assert purpose.failed == []
    await session.refresh(order)
    assert order.status == "succeeded"
    assert order.stripe_payment_intent_id == pi


async def test_a_failed_order_of_a_registered_purpose_runs_its_failure_hook(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    purpose = FakeGiftPurpose()
    with PURPOSES.registered(purpose):
        order = await _pending_order(session, 2_500)
        intent = succeeded_intent(order, f"pi_gift_{order.id}")
        intent.update(
            status="requires_payment_method",
            amount_received=0,
            last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
        )
        response = await deliver(client, make_event("payment_intent.payment_failed", intent))
        assert response.status_code == 200, response.text

    assert purpose.paid == []
    assert purpose.failed == [(order.id, "failed")]
    await session.refresh(order)
    assert order.status == "failed"


def test_the_app_wires_the_documented_purposes() -> None:
    # create_app (the client fixture's app, and this process's) wires them once; a
    # second wiring is a no-op.
    from payments_api.payins import wire_purposes

    assert wire_purposes().names() == ["direct", "escrow", "order", "topup"]
