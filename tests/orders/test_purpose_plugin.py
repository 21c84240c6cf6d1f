"""The purpose seam is real: a purpose defined here (one class, one registration) gets
its hooks run by the real webhook path, from a signed Stripe event to the order, and by
the real refund path, from the admin API to Stripe's answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.types import EventType
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.models import Order
from payments_api.orders.purposes import (
    PURPOSES,
    BasePurpose,
    PaidPayment,
    RefundBooking,
    RefundTerms,
)
from tests.factories import create_user, ledger_invariants
from tests.helpers import make_event
from tests.orders.test_checkout import deliver, succeeded_intent
from tests.refunds.helpers import ADMIN, cause_count, platform, refund_from_request

FAKE = "fake_gift"


@dataclass
class FakeGiftPurpose(BasePurpose):
    """Remembers what it was told instead of booking money."""

    name: str = FAKE
    paid_event: EventType = EventType.order_paid
    paid: list[tuple[int, str, int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    refunded: list[tuple[int, int, str | None]] = field(default_factory=list)

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        self.paid.append((order.id, payment.payment_intent_id, payment.amount, payment.currency))

    async def on_failed(self, session: AsyncSession, order: Order) -> None:
        self.failed.append((order.id, order.status))

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        return RefundTerms()

    async def on_refunded(self, booking: RefundBooking) -> None:
        refund = booking.refund
        self.refunded.append((booking.order.id, refund.amount, refund.stripe_refund_id))
        await booking.settle_unbacked()


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


async def test_a_refund_of_an_order_of_a_registered_purpose_runs_its_refund_hook_once(
    client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
) -> None:
    purpose = FakeGiftPurpose()
    refunds = stripe_mock.post("/v1/refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status="succeeded", currency="usd")
        )
    )
    with PURPOSES.registered(purpose):
        order = await _pending_order(session, 3_000)
        paid = make_event(
            "payment_intent.succeeded", succeeded_intent(order, f"pi_gift_{order.id}")
        )
        assert (await deliver(client, paid)).status_code == 200
        adjustments_before = await platform(session, AccountKind.adjustments)
        response = await client.post(
            "/api/v1/admin/refunds",
            json={"order_id": f"ord_{order.id}", "amount": 1_000},
            headers={**ADMIN, "Idempotency-Key": f"gift-refund-{order.id}"},
        )
        assert response.status_code == 201, response.text
        stripe_refund = refunds.calls.last.response.json()
        # Stripe's event for the same refund changes nothing: the hook ran once.
        event = make_event("refund.updated", stripe_refund)
        assert (await deliver(client, event)).status_code == 200

    assert response.json()["status"] == "succeeded"
    assert refunds.call_count == 1
    assert purpose.refunded == [(order.id, 1_000, stripe_refund["id"])]
    # What the hook booked is what the ledger holds: the platform bore the refund.
    assert await cause_count(session, f"stripe:refund:{stripe_refund['id']}") == 1
    assert await platform(session, AccountKind.adjustments) == adjustments_before - 1_000
    await session.refresh(order)
    assert (order.status, order.refunded_amount) == ("partially_refunded", 1_000)
    assert await ledger_invariants(session) == []


def test_the_app_wires_the_documented_purposes() -> None:
    # create_app (the client fixture's app, and this process's) wires them once; a
    # second wiring is a no-op.
    from payments_api.payins import wire_purposes

    assert wire_purposes().names() == ["direct", "escrow", "order", "topup"]
