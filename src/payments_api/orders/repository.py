from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm.attributes import set_committed_value

from payments_api.db import (
    RawStatement,
    attach_instance,
    autoflush,
    detached_instance,
    driver_connection,
)
from payments_api.events.outbox import EVENT_CTES, StagedEvent, written
from payments_api.kit.row_repository import RowRepository
from payments_api.orders.models import DiscountCode, Order, Price

_COLUMNS: tuple[str, ...] = tuple(column.key for column in Order.__table__.columns)
_JSON_COLUMNS = frozenset(
    column.key for column in Order.__table__.columns if isinstance(column.type, JSONB)
)


def _detached(row: Any) -> Order:
    """An ``Order`` holding a row a raw statement returned (jsonb may arrive as text,
    depending on the connection's codecs)."""
    return detached_instance(
        Order,
        (
            (name, json.loads(value) if name in _JSON_COLUMNS and isinstance(value, str) else value)
            for name, value in zip(_COLUMNS, row, strict=True)
        ),
    )


# The webhook path's order statements, hand-written and compiled once (as the escrows'
# and the ledger's): an ORM select built per event (its conditions' coercion, the
# entity's loading) and a unit-of-work flush for the status were together about a
# quarter of a delivery's CPU (bench/README.md).
def _locked_by(column: str) -> RawStatement:
    return RawStatement.of(
        text(f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE {column} = :value FOR UPDATE")  # noqa: S608 - constants only
    )


_LOCKED_BY_ID = _locked_by("id")
_LOCKED_BY_CHECKOUT_SESSION = _locked_by("stripe_checkout_session_id")
_LOCKED_BY_PAYMENT_INTENT = _locked_by("stripe_payment_intent_id")
_SUCCEEDED = {"status": "succeeded", "failure_code": None}
# The order's success and its event (the outbox's common table expressions) in one
# statement: one round trip less per paid order than the event's own.
_MARK_SUCCEEDED = RawStatement.of(
    text(
        f"""
        WITH succeeded AS (
            UPDATE orders
            SET status = 'succeeded', failure_code = NULL, succeeded_at = :now,
                updated_at = :now
            WHERE id = :id
        ), {EVENT_CTES.strip()}
        SELECT (SELECT id FROM event) AS event_id, (SELECT count(*) FROM deliveries) AS deliveries
        """  # noqa: S608 - constants only
    )
)


class OrderRepository(RowRepository[Order]):
    model = Order

    async def escrow_funding(self, escrow_id: int, *, for_update: bool = False) -> Order | None:
        """The confirmed card payment of an escrow (purpose ``escrow``), if any."""
        stmt = (
            select(Order)
            .where(
                Order.purpose == "escrow",
                Order.reference["escrow_id"].as_integer() == escrow_id,
                Order.stripe_payment_intent_id.is_not(None),
                Order.status.in_(("succeeded", "partially_refunded", "refunded")),
            )
            .order_by(Order.id)
            .limit(1)
        )
        return await self.one(stmt, for_update=for_update)

    async def get_for_user(self, user_id: str, order_id: int) -> Order | None:
        return await self.one(
            select(Order).where(Order.id == order_id, Order.user_id == user_id), fresh=False
        )

    async def by_idempotency_key(self, user_id: str, key: str) -> Order | None:
        return await self.one(
            select(Order).where(Order.user_id == user_id, Order.idempotency_key == key),
            fresh=False,
        )

    async def by_stripe_ids(
        self,
        *,
        order_id: int | None,
        checkout_session_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> Order | None:
        """Find the order an event is about, locked: by our id from Stripe metadata first,
        then by the Stripe object ids recorded on it."""
        await autoflush(self.session)
        driver = await driver_connection(self.session)
        for statement, value in (
            (_LOCKED_BY_ID, order_id),
            (_LOCKED_BY_CHECKOUT_SESSION, checkout_session_id or None),
            (_LOCKED_BY_PAYMENT_INTENT, payment_intent_id or None),
        ):
            if value is None:
                continue
            row = await driver.fetchrow(statement.sql, *statement.args({"value": value}))
            if row is not None:
                return attach_instance(self.session, _detached(row))
        return None

    async def mark_succeeded(
        self, order: Order, now: datetime, event_of: Callable[[Order], StagedEvent]
    ) -> None:
        """``order`` (locked by this transaction) succeeded at ``now``, and its event
        ``event_of(order)`` (rendered as the statement leaves the order) is written: one
        statement. The instance takes the new values as committed ones: the locked row
        holds exactly them afterwards, and the session's flush has nothing to write."""
        await autoflush(self.session)  # the order's other changes first
        for name, value in {**_SUCCEEDED, "succeeded_at": now, "updated_at": now}.items():
            set_committed_value(order, name, value)
        event = event_of(order)
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(
            _MARK_SUCCEEDED.sql,
            *_MARK_SUCCEEDED.args({"id": order.id, "now": now, **event.params()}),
        )
        await written(self.session, row["event_id"], row["deliveries"])

    async def page(self, user_id: str, *, limit: int, before_id: int | None) -> list[Order]:
        return await self.newest_first(Order.user_id == user_id, limit=limit, before_id=before_id)

    async def page_needing_review(self, *, limit: int, before_id: int | None) -> list[Order]:
        return await self.newest_first(
            Order.status == "needs_review", limit=limit, before_id=before_id
        )


class CatalogRepository(RowRepository[Price]):
    model = Price

    async def active_price(self, lookup_key: str) -> Price | None:
        return await self.one(
            select(Price).where(Price.lookup_key == lookup_key, Price.active.is_(True)),
            fresh=False,
        )

    async def prices(self) -> list[Price]:
        return list((await self.session.scalars(select(Price).order_by(Price.id))).all())

    async def price_by_key(self, lookup_key: str) -> Price | None:
        return await self.one(select(Price).where(Price.lookup_key == lookup_key), fresh=False)

    async def discount_by_code(self, code: str) -> DiscountCode | None:
        return await self.one(select(DiscountCode).where(DiscountCode.code == code), fresh=False)

    async def redeem_discount(self, code: str, now: datetime) -> DiscountCode | None:
        """Take one use of a code atomically; None when unknown, outside its window,
        inactive or used up (the WHERE clause is the whole rule, so two concurrent
        redemptions can never exceed the limit)."""
        result: DiscountCode | None = await self.session.scalar(
            update(DiscountCode)
            .where(
                DiscountCode.code == code,
                DiscountCode.active.is_(True),
                (DiscountCode.valid_from.is_(None)) | (DiscountCode.valid_from <= now),
                (DiscountCode.valid_until.is_(None)) | (DiscountCode.valid_until > now),
                (DiscountCode.max_redemptions.is_(None))
                | (DiscountCode.redemptions < DiscountCode.max_redemptions),
            )
            .values(redemptions=DiscountCode.redemptions + 1)
            .returning(DiscountCode)
        )
        return result
