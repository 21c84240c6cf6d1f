"""Applying Stripe's word on a refund of an order: the only code that moves the refunded
money of card pay-ins (the API's answer and the ``refund.*``/``charge.refunded`` events
both come here, see :mod:`payments_api.refunds.two_phase`).

Where the money comes back from is the order's purpose's to say
(``Purpose.on_refunded``): it books through :class:`OrderRefundBooking`, whose
``settle_*`` methods post the standard ``refund`` transaction (cause
``stripe:refund:{re}``), or posts its own (a direct payment's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.capture import is_manual_escrow_order
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.models import Order
from payments_api.orders.purposes import PURPOSES
from payments_api.orders.reads import ORDER_PREFIX, order_read
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import RefundRepository
from payments_api.orders.repository import OrderRepository
from payments_api.refunds.reads import REFUND_PREFIX, refund_read
from payments_api.refunds.refund_events import emit_refund_outcome
from payments_api.refunds.refund_ledger import (
    platform_account,
    refund_transaction,
    to_the_card,
    user_account,
)
from payments_api.refunds.released_authorizations import releases_an_authorization
from payments_api.refunds.two_phase import RefundSettlementFlow
from payments_api.refunds.wallet_refunds import refresh_wallet_refund
from payments_api.stripe.objects import Refund as StripeRefund

log = logging.getLogger(__name__)

REFUNDABLE_STATUSES = ("succeeded", "partially_refunded")


def hold_kind(refund: Refund) -> AccountKind:
    """Where a refund's hold sits: a wallet cash-out's in ``refunding`` (the customer
    sees it there), an admin refund's in ``withdrawing``."""
    return AccountKind.refunding if refund.wallet_refund_id is not None else AccountKind.withdrawing


def refresh_order_status(order: Order) -> None:
    if order.status not in ("succeeded", *REFUNDABLE_STATUSES, "refunded"):
        return  # not confirmed yet: the pay-in's own events decide its status
    if order.refunded_amount >= order.amount:
        order.status = "refunded"
    elif order.refunded_amount > 0:
        order.status = "partially_refunded"
    else:
        order.status = "succeeded"


async def emit_refund_succeeded(session: AsyncSession, refund: Refund, order: Order) -> None:
    await emit_refund_outcome(session, refund_read(refund), "refund", refund.id, "succeeded")
    await emit(
        session,
        EventType.order_refunded,
        order_read(order),
        change_key=f"order:{order.id}:refunded:{refund.id}",
        user_ids=[order.user_id],
    )


async def emit_refund_failed(session: AsyncSession, refund: Refund) -> None:
    await emit_refund_outcome(session, refund_read(refund), "refund", refund.id, "failed")


@dataclass(slots=True)
class OrderRefundHandover:
    """A refund of an order handed to its purpose's refund hooks, in the refund's
    transaction: what a hook books with and about."""

    session: AsyncSession
    ledger: ledger_service.LedgerService
    order: Order
    refund: Refund

    def refund_transaction(
        self, type: str, postings: list[ledger_service.PostingSpec], **details: Any
    ) -> ledger_service.NewTransaction:
        """A transaction of the refund (``refund_ledger.refund_transaction``)."""
        return refund_transaction(self.refund, type, postings, **details)


@dataclass(slots=True)
class OrderRefundBooking(OrderRefundHandover):
    """A card refund of an order (``orders.purposes.RefundBooking``)."""

    def _from_hold(self, kind: AccountKind) -> list[ledger_service.PostingSpec]:
        """What the refund held, taken out of the customer's ``kind`` (nothing when the
        refund held nothing)."""
        refund = self.refund
        if not refund.hold_amount:
            return []
        account = user_account(refund.user_id, kind, refund.currency)
        return [ledger_service.PostingSpec(account, -refund.hold_amount)]

    async def settle_from_wallet(self) -> None:
        refund = self.refund
        amount = refund.amount
        if refund.hold_amount:
            await self._post(self._from_hold(hold_kind(refund)), amount - refund.hold_amount)
            return
        # A dashboard refund: no hold, taken from what the customer still holds.
        wallet = user_account(refund.user_id, AccountKind.available, refund.currency)
        taken = max(0, min(await self.ledger.balance_of(wallet), amount))
        debits = [ledger_service.PostingSpec(wallet, -taken)] if taken else []
        await self._post(debits, amount - taken)

    async def settle_from_sales(self) -> None:
        # The credit taken back is held in the buyer's withdrawing since the request; the
        # rest comes out of the sale.
        refund = self.refund
        debits = self._from_hold(AccountKind.withdrawing)
        if refund.amount != refund.hold_amount:
            debits.append(
                ledger_service.PostingSpec(
                    platform_account(AccountKind.sales, refund.currency),
                    refund.hold_amount - refund.amount,
                )
            )
        await self._post(debits, 0)

    async def settle_unbacked(self) -> None:
        await self._post([], self.refund.amount)

    async def _post(self, debits: list[ledger_service.PostingSpec], shortfall: int) -> None:
        """The money leaves the platform's Stripe balance, taken from ``debits``; the
        ``shortfall`` Stripe has paid out anyway is booked to the platform's adjustments."""
        refund = self.refund
        currency = refund.currency
        if shortfall:
            log.warning(
                "refund %s: %s minor units not covered by the customer's wallet were booked "
                "to the platform's adjustments",
                refund.id,
                shortfall,
            )
            debits.append(
                ledger_service.PostingSpec(
                    platform_account(AccountKind.adjustments, currency), -shortfall
                )
            )
        await self.ledger.post(
            self.refund_transaction(
                "refund",
                to_the_card(refund, debits),
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} of "
                f"{public_id(ORDER_PREFIX, refund.order_id)}",
                shortfall=shortfall,
            )
        )


class RefundSettlement(RefundSettlementFlow[Refund, Order]):
    """Applies Stripe's word on a refund of an order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orders = OrderRepository(self.session)

    def _rows(self) -> RefundRepository:
        return RefundRepository(self.session)

    async def parent_of(self, refund: Refund, *, for_update: bool = False) -> Order | None:
        return await self.orders.get(refund.order_id, for_update=for_update)

    async def _record_external(self, stripe_refund: StripeRefund) -> Refund | None:
        payment_intent = stripe_refund.payment_intent
        if payment_intent is None and stripe_refund.charge is not None:
            payment_intent = (
                await self.stripe.retrieve_charge(stripe_refund.charge)
            ).payment_intent
        order = None
        if payment_intent is not None:
            order = await self.orders.by_stripe_ids(order_id=None, payment_intent_id=payment_intent)
        if order is None:
            log.info(
                "refund %s (payment %s) is not about one of our orders; ignored",
                stripe_refund.id,
                payment_intent,
            )
            return None
        if is_manual_escrow_order(order) and await releases_an_authorization(
            stripe_refund, self.stripe
        ):
            log.info("refund %s released an authorization; not a refund", stripe_refund.id)
            return None
        values = {"order_id": order.id, "user_id": order.user_id, "hold_amount": 0}
        return await self._record(stripe_refund, order.currency, values, f"order {order.id}")

    def booking(self, refund: Refund, order: Order) -> OrderRefundBooking:
        return OrderRefundBooking(self.session, self.ledger, order, refund)

    async def _settle(self, refund: Refund, order: Order, now: datetime) -> None:
        await PURPOSES.get(order.purpose).on_refunded(self.booking(refund, order))

    async def _count_succeeded(self, refund: Refund, order: Order, now: datetime) -> None:
        order.refunded_amount += refund.amount
        refresh_order_status(order)
        order.updated_at = now

    async def _emit_succeeded(self, refund: Refund, order: Order) -> None:
        await emit_refund_succeeded(self.session, refund, order)

    async def emit_failed(self, refund: Refund, order: Order) -> None:
        await emit_refund_failed(self.session, refund)

    async def after_change(self, refund: Refund) -> None:
        if refund.wallet_refund_id is not None:
            await refresh_wallet_refund(self.session, refund.wallet_refund_id, self.now())

    async def release_hold(self, refund: Refund) -> None:
        """Stripe did not refund: the held money goes back to available."""
        await self._credit_not_taken(refund)
        await self._post_release(refund, refund.hold_amount, hold_kind(refund))

    async def _credit_not_taken(self, refund: Refund) -> None:
        """A refund that did not happen took no credit back: the order's count of credit
        taken back forgets it (the held credit itself returns with the hold)."""
        if not refund.credit_amount:
            return
        order = await self.orders.get(refund.order_id, for_update=True)
        if order is not None:
            order.credit_taken_back_amount -= refund.credit_amount

    async def _revert(self, refund: Refund, order: Order, now: datetime) -> None:
        """The exact opposite of the settlement, with the customer's share returned to
        available (the hold it came from is gone)."""
        settled_key = f"stripe:refund:{refund.stripe_refund_id}"
        settled = await self.ledger.repository.get_transaction(cause_key=settled_key)
        if settled is None:  # pragma: no cover - succeeded always posted it
            raise RuntimeError(f"refund {refund.id} succeeded without a ledger transaction")
        await self._credit_not_taken(refund)
        await PURPOSES.get(order.purpose).on_refund_reverted(self.booking(refund, order))
        await self._post_reverted(
            refund, [settled_key], held=(AccountKind.withdrawing, AccountKind.refunding)
        )
        order.refunded_amount -= refund.amount
        refresh_order_status(order)
        order.updated_at = now
