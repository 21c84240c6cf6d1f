"""The webhook path's raw order statements keep the ORM's guarantees: a lookup sees
the session's pending changes and never undoes them (what autoflush gave the ORM
select), marking an order succeeded leaves nothing for the flush to write, and the paid
event that rides that statement is the outbox's event."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.models import WebhookEndpoint
from payments_api.events.types import EventType
from payments_api.kit.clock import utcnow
from payments_api.orders.models import Order
from payments_api.orders.reads import order_read, owner_event
from payments_api.orders.repository import OrderRepository
from tests.factories import create_user


async def _order(session: AsyncSession, user_id: str, **values: object) -> Order:
    await create_user(session, id=user_id)
    order = Order(
        user_id=user_id,
        purpose="topup",
        channel="payment_intent",
        amount=2_000,
        currency="usd",
        idempotency_key=f"key-{user_id}",
        request_fingerprint="0" * 64,
        **values,
    )
    session.add(order)
    return order


async def test_a_lookup_finds_an_order_added_but_not_yet_flushed(session: AsyncSession) -> None:
    order = await _order(session, "lookup-pending", stripe_checkout_session_id="cs_pending")
    found = await OrderRepository(session).by_stripe_ids(
        order_id=None, checkout_session_id="cs_pending"
    )
    assert found is order


async def test_a_lookup_keeps_the_sessions_unflushed_change(session: AsyncSession) -> None:
    order = await _order(session, "lookup-dirty", stripe_payment_intent_id="pi_dirty")
    await session.flush()
    order.amount = 1_500  # changed in this session, not flushed
    found = await OrderRepository(session).by_stripe_ids(order_id=order.id)
    assert found is order
    assert found.amount == 1_500
    stored = await session.scalar(
        text("SELECT amount FROM orders WHERE id = :id"), {"id": order.id}
    )
    assert stored == 1_500


async def test_marking_succeeded_writes_once_and_leaves_the_order_clean(
    session: AsyncSession,
) -> None:
    order = await _order(session, "lookup-succeed", stripe_payment_intent_id="pi_succeed")
    await session.flush()
    now = utcnow()
    repository = OrderRepository(session)
    await repository.mark_succeeded(
        order, now, lambda paid: owner_event(paid, EventType.topup_succeeded, "paid")
    )
    assert (order.status, order.failure_code, order.succeeded_at) == ("succeeded", None, now)
    assert order not in session.dirty
    row = (
        await session.execute(
            text("SELECT status, succeeded_at FROM orders WHERE id = :id"), {"id": order.id}
        )
    ).one()
    assert (row.status, row.succeeded_at) == ("succeeded", now)


async def test_marking_succeeded_writes_the_paid_event_and_its_delivery_in_its_statement(
    session: AsyncSession,
) -> None:
    """The paid event rides the statement that marks the order: written with the order as
    that statement leaves it, with a delivery for an endpoint that wants it, and the
    delivery job queued."""
    endpoint = WebhookEndpoint(
        url="https://apps.example/hooks", event_types=["topup.succeeded"], secret="whsec_x"
    )
    session.add(endpoint)
    order = await _order(session, "lookup-event", stripe_payment_intent_id="pi_event")
    await session.flush()
    now = utcnow()
    await OrderRepository(session).mark_succeeded(
        order, now, lambda paid: owner_event(paid, EventType.topup_succeeded, "paid")
    )
    events = (
        await session.execute(
            text(
                "SELECT id, type, change_key, user_ids, payload FROM events WHERE change_key = :k"
            ),
            {"k": f"order:{order.id}:paid"},
        )
    ).all()
    assert len(events) == 1
    event = events[0]
    assert (event.type, event.user_ids) == ("topup.succeeded", ["lookup-event"])
    assert event.payload == json.loads(order_read(order).model_dump_json())
    assert event.payload["status"] == "succeeded"
    deliveries = await session.scalar(
        text("SELECT count(*) FROM event_deliveries WHERE event_id = :id AND endpoint_id = :e"),
        {"id": event.id, "e": endpoint.id},
    )
    assert deliveries == 1
    jobs = await session.scalar(
        text("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'events.deliver' AND payload = :p"),
        {"p": f"event:{event.id}".encode()},
    )
    assert jobs == 1
