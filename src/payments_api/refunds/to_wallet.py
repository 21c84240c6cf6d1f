"""Refunds of orders paid from the wallet: back to the wallet at once, no Stripe call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger import shapes
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.models import Order
from payments_api.orders.purposes import PURPOSES
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.refund_errors import CreditAlreadySpent, OrderNotRefundable
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import RefundRepository
from payments_api.refunds import metrics
from payments_api.refunds.admin_request import AdminRefundRequest
from payments_api.refunds.reads import REFUND_PREFIX
from payments_api.refunds.refund_ledger import platform_account, user_account
from payments_api.refunds.reservation import (
    credit_to_take_back,
    freeze_for_refund,
    order_refund,
    order_snapshot,
)
from payments_api.refunds.schemas import RefundCreate
from payments_api.refunds.settlement import (
    REFUNDABLE_STATUSES,
    OrderRefundHandover,
    emit_refund_succeeded,
    refresh_order_status,
)
from payments_api.refunds.two_phase import amount_to_refund


@dataclass(slots=True)
class WalletRefund(OrderRefundHandover):
    """A wallet refund handed to ``Purpose.on_refunded_to_wallet``
    (``orders.purposes.WalletRefundBooking``)."""

    def transaction(
        self, extra: list[ledger_service.PostingSpec], **metadata: Any
    ) -> ledger_service.NewTransaction:
        refund, order = self.refund, self.order
        wallet = user_account(order.user_id, AccountKind.available, refund.currency)
        return self.refund_transaction(
            "wallet_refund",
            [ledger_service.PostingSpec(wallet, refund.amount), *extra],
            step="wallet",
            description=f"Refund {public_id(REFUND_PREFIX, refund.id)} of "
            f"{public_id(ORDER_PREFIX, order.id)} to the wallet",
            **metadata,
        )

    async def from_sales(self) -> None:
        sales = platform_account(AccountKind.sales, self.refund.currency)
        await self.ledger.post(
            self.transaction([ledger_service.PostingSpec(sales, -self.refund.amount)])
        )


async def refund_to_wallet(
    session: AsyncSession,
    order: Order,
    request: AdminRefundRequest,
    body: RefundCreate,
    *,
    now: datetime,
) -> Refund:
    """Refund an order paid from the wallet: back to the wallet, at once, in this
    transaction (no Stripe call). Same checks and proportions as a card refund: where
    the money comes back from is the purpose's to say (``on_refunded_to_wallet``: a
    catalog order's sales, a direct payment's payee and fee); an order that granted
    credit takes it back in proportion (``credit_already_spent`` unless forced)."""
    if order.status not in REFUNDABLE_STATUSES and order.status != "refunded":
        raise OrderNotRefundable(
            f"Order {public_id(ORDER_PREFIX, order.id)} is {order.status}.",
            order_status=order.status,
        )
    refundable = order.amount - order.refunded_amount
    amount = amount_to_refund(
        body.amount, refundable, order.currency, public_id(ORDER_PREFIX, order.id)
    )
    currency = order.currency
    ledger = ledger_service.LedgerService(session)
    wallet = user_account(order.user_id, AccountKind.available, currency)
    available = await ledger.balance_of(wallet)
    credit = credit_to_take_back(order, order.refunded_amount + amount)
    # The refunded amount reaches the wallet first: the credit must be covered by
    # what the buyer holds after it.
    forced = bool(credit) and available + amount < credit
    if forced and not body.force:
        raise CreditAlreadySpent(
            f"The order granted {order.granted_credit_amount} {currency} minor units of "
            f"wallet credit; this refund takes back {credit}, the buyer would hold "
            f"{max(available + amount, 0)}. Refund with `force: true` to take it anyway "
            "(the wallet goes negative and is frozen).",
            available=max(available, 0),
            credit_to_take_back=credit,
            currency=currency,
        )
    refund = order_refund(
        order,
        amount,
        status="succeeded",
        origin="admin",
        hold_amount=0,
        stripe_attempts=0,
        credit_amount=credit,
        forced=forced,
        succeeded_at=now,
        **request.row_fields(),
    )
    added = await request.add_once(session, refund, RefundRepository(session))
    if added is not refund:
        return added
    booking = WalletRefund(session, ledger, order, refund)
    await PURPOSES.get(order.purpose).on_refunded_to_wallet(booking)
    if credit:
        await ledger.post(
            booking.refund_transaction(
                "order_credit_reversal",
                shapes.move(
                    credit, out_of=wallet, into=platform_account(AccountKind.sales, currency)
                ),
                step="credit",
                description=f"Wallet credit of {public_id(ORDER_PREFIX, order.id)} taken "
                f"back by {public_id(REFUND_PREFIX, refund.id)}",
                allow_negative_available=forced,
                forced=forced,
            )
        )
        order.credit_taken_back_amount += credit
    order.refunded_amount += amount
    refresh_order_status(order)
    order.updated_at = now
    await request.audit(
        session,
        public_id(REFUND_PREFIX, refund.id),
        before={"order": order_snapshot(order, 0), "customer_available": available},
        after={
            "order": order_snapshot(order, 0),
            "refund": {
                "id": public_id(REFUND_PREFIX, refund.id),
                "amount": amount,
                "currency": currency,
                "status": refund.status,
                "to": "wallet",
            },
            "customer_available": available + amount - credit,
            "credit_taken_back": credit,
            "forced": forced,
        },
    )
    if forced:
        await freeze_for_refund(session, refund, order, request_id=request.request_id)
    metrics.REFUNDS.labels(origin="admin", outcome="succeeded").inc()
    await emit_refund_succeeded(session, refund, order)
    return refund
