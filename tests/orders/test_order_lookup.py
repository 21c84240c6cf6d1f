"""The webhook path's raw order statements keep the ORM's guarantees: a lookup sees
the session's pending changes and never undoes them (what autoflush gave the ORM
select), and marking an order succeeded leaves nothing for the flush to write."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.clock import utcnow
from payments_api.orders.models import Order
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
    marked = await repository.mark_succeeded(order, now)
    assert marked is order
    assert (order.status, order.failure_code, order.succeeded_at) == ("succeeded", None, now)
    assert order not in session.dirty
    row = (
        await session.execute(
            text("SELECT status, succeeded_at FROM orders WHERE id = :id"), {"id": order.id}
        )
    ).one()
    assert (row.status, row.succeeded_at) == ("succeeded", now)
