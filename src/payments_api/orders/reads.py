"""How an order reads to its owner and to operators (``ord_…`` ids)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import StagedEvent, emit_staged, stage
from payments_api.events.types import EventType
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.kit.reads import read_of
from payments_api.orders.errors import OrderNotFound
from payments_api.orders.models import Order
from payments_api.orders.repository import OrderRepository
from payments_api.orders.schemas import OrderList, OrderRead
from payments_api.users.models import User

ORDER_PREFIX = "ord"


def order_read(order: Order) -> OrderRead:
    return read_of(
        OrderRead,
        order,
        id=public_id(ORDER_PREFIX, order.id),
        # Where the customer goes next, only while the order waits for them there.
        checkout_url=order.checkout_url if order.status == "pending" else None,
        action_url=order.action_url if order.status == "requires_action" else None,
        source="wallet" if order.channel == "wallet" else "card",
        granted_credit=order.granted_credit_amount,
        credit_taken_back=order.credit_taken_back_amount,
    )


class OrderQueries:
    """Read side of orders for their owner."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = OrderRepository(session)

    async def list(self, user: User, *, limit: int, starting_after: str | None) -> OrderList:
        rows = await self.repository.page(
            user.id, limit=limit + 1, before_id=parse_cursor(ORDER_PREFIX, starting_after)
        )
        return OrderList(data=[order_read(o) for o in rows[:limit]], has_more=len(rows) > limit)

    async def needing_review(self, *, limit: int, starting_after: str | None) -> OrderList:
        """Paid pay-ins held back because Stripe's amount or currency differs."""
        rows = await self.repository.page_needing_review(
            limit=limit + 1, before_id=parse_cursor(ORDER_PREFIX, starting_after)
        )
        return OrderList(data=[order_read(o) for o in rows[:limit]], has_more=len(rows) > limit)

    async def get(self, user: User, order_id: str) -> OrderRead:
        number = parse_public_id(ORDER_PREFIX, order_id)
        order = await self.repository.get_for_user(user.id, number) if number else None
        if order is None:
            raise OrderNotFound()
        return order_read(order)


def owner_event(order: Order, event: EventType, step: str) -> StagedEvent:
    """What the order's user hears of ``step`` (``paid``, ``failed``, ...), once: the
    change key names the order and the step."""
    return stage(
        event, order_read(order), change_key=f"order:{order.id}:{step}", user_ids=[order.user_id]
    )


async def tell_owner(session: AsyncSession, order: Order, event: EventType, step: str) -> None:
    """Write :func:`owner_event` in a statement of its own."""
    await emit_staged(session, owner_event(order, event, step))
