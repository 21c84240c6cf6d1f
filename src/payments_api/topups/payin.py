"""Top-ups (purpose ``topup``): the paid amount lands in the user's available balance,
and the user hears of every step (succeeded, failed, waiting for them). A refund takes
the money back out of that balance: held from it until Stripe answers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.types import EventType
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.chosen_amount import ChosenAmountPurpose
from payments_api.orders.confirmation import post_payment
from payments_api.orders.models import Order
from payments_api.orders.purposes import (
    CheckoutLine,
    CheckoutRequest,
    PaidPayment,
    RefundBooking,
    RefundTerms,
)
from payments_api.orders.reads import tell_owner


class TopupPurpose(ChosenAmountPurpose):
    name = "topup"
    paid_event = EventType.topup_succeeded
    chosen_as = "A top-up"

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        return self.pending_order(request, *self.chosen_amount(request), reference={})

    def checkout_line(self, order: Order) -> CheckoutLine:
        return CheckoutLine(name="Wallet top-up")

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        await post_payment(
            payment,
            order,
            destination=ledger_service.AccountRef.user(
                order.user_id, AccountKind.available, order.currency
            ),
            transaction_type="topup",
        )

    async def on_failed(self, session: AsyncSession, order: Order) -> None:
        await tell_owner(session, order, EventType.topup_failed, "failed")

    async def on_requires_action(self, session: AsyncSession, order: Order) -> None:
        await tell_owner(session, order, EventType.topup_requires_action, "requires_action")

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        # The customer can neither spend nor withdraw money that is being refunded.
        return RefundTerms(from_wallet=True)

    async def on_refunded(self, booking: RefundBooking) -> None:
        await booking.settle_from_wallet()
