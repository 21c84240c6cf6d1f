"""Job offers paid by card (purpose ``escrow``): the Checkout request creates the job's
escrow, and the payment lands in it directly when Stripe confirms it (never through the
wallet). With ``capture_method=manual`` the card is only authorized; a capture of less
than the hold makes the order what was paid.

A card-paid job is refunded by the API only once completed: the refund reverses the
job's settlement in proportion (:func:`reverse_settlement`); before that it is cancelled
(``refund_to: card`` before acceptance)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.escrow import service as escrow_service
from payments_api.escrow.errors import EscrowCheckoutIncomplete
from payments_api.escrow.models import CaptureMethod, Escrow, EscrowFunding, EscrowStatus
from payments_api.escrow.repository import EscrowRepository
from payments_api.escrow.schemas import EscrowCreate
from payments_api.escrow.settlement_reversal import reverse_escrow_settlement
from payments_api.events.types import EventType
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.money import proportional_part
from payments_api.orders.chosen_amount import ChosenAmountPurpose
from payments_api.orders.models import Order
from payments_api.orders.purposes import (
    CheckoutLine,
    CheckoutRequest,
    PaidPayment,
    RefundBooking,
    RefundTerms,
)
from payments_api.orders.refund_errors import RefundNotSupported
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import RefundRepository
from payments_api.orders.schemas import CheckoutSessionCreate
from payments_api.problems import Forbidden
from payments_api.settings import Settings

log = logging.getLogger(__name__)

REFUND_PREFIX = "rfd"


def _manual_capture(order: Order) -> bool:
    return order.reference.get("capture_method") == CaptureMethod.manual.value


class EscrowPurpose(ChosenAmountPurpose):
    name = "escrow"
    paid_event = EventType.order_paid
    # A job offer is chosen by the customer like a top-up, within the same limits.
    chosen_as = "A job payment"

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        if not principal.has_role("customer"):
            raise Forbidden("Paying for a job needs the customer role.")
        super().check_checkout(body, principal, settings)

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        """The escrow waits for the payment (``EscrowService.fund_from_payment``)."""
        body = request.body
        if body.payee_id is None or body.reference is None:
            raise EscrowCheckoutIncomplete("A job payment needs `payee_id` and `reference`.")
        amount, currency = self.chosen_amount(request)
        escrow, _replayed = await escrow_service.EscrowService(
            request.session, request.settings
        ).create(
            request.user,
            EscrowCreate(
                payee_id=body.payee_id,
                amount=amount,
                currency=currency,
                reference=body.reference,
                project_id=body.project_id,
                session_id=body.session_id,
                description=body.description,
            ),
            idempotency_key=f"checkout:{request.idempotency_key}",
            funding=EscrowFunding.card,
            capture_method=CaptureMethod(body.capture_method),
        )
        reference: dict[str, Any] = {"escrow_id": escrow.id, "reference": body.reference}
        if escrow.capture_method == CaptureMethod.manual.value:
            reference["capture_method"] = CaptureMethod.manual.value
        return self.pending_order(request, escrow.hold_amount, escrow.currency, reference)

    def checkout_line(self, order: Order) -> CheckoutLine:
        line = CheckoutLine(name=f"Job {order.reference.get('reference', '')}".strip())
        if _manual_capture(order):
            # Authorize only: the escrow captures it when the payee accepts.
            line.intent_data["capture_method"] = CaptureMethod.manual.value
        return line

    def takes_partial_capture(self, order: Order) -> bool:
        # An authorization captured in part: Stripe released the rest at the card.
        return _manual_capture(order)

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        # Straight into the job's escrow, once per PaymentIntent; a job that cannot take
        # it credits the wallet instead.
        await escrow_service.EscrowService(payment.session, payment.settings).fund_from_payment(
            escrow_id=int(order.reference["escrow_id"]),
            payment_intent_id=payment.payment_intent_id,
            amount=payment.amount,
            currency=payment.currency,
        )

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        # The escrow's lock first, then the order's (the caller's): the order
        # cancel-to-card takes them in that order, so the two cannot deadlock.
        escrow_id = int(order.reference.get("escrow_id", 0))
        escrow = await EscrowRepository(session).get(escrow_id, for_update=True)
        if escrow is None or escrow.status != EscrowStatus.completed.value:
            return RefundTerms(
                refundable=False,
                refusal=RefundNotSupported(
                    "A job payment is refunded here once the job is completed; before "
                    "that, cancel the escrow (`refund_to: card` before acceptance).",
                    purpose=order.purpose,
                    escrow_status=escrow.status if escrow is not None else None,
                ),
            )

        async def reverse(session: AsyncSession, refund: Refund, order: Order) -> None:
            await reverse_settlement(session, refund, order, escrow)

        return RefundTerms(from_wallet=True, reverse_into_hold=reverse)

    async def on_refunded(self, booking: RefundBooking) -> None:
        # The money was back in the customer's wallet (a cancelled job) or reversed
        # into the refund's hold (a completed one): it leaves from there.
        await booking.settle_from_wallet()


async def reverse_settlement(
    session: AsyncSession, refund: Refund, order: Order, escrow: Escrow
) -> None:
    """Take back a completed escrow's settlement in proportion to the refund: the
    payee's take (``proportional_part`` of the payee's amount, cumulative largest
    remainder over the order's refunds) and the rest from the platform's fees (the
    platform fee and the service fee it kept). What the payee no longer holds
    (withdrawn since) is covered by the platform, booked to ``adjustments``. It all
    goes into the customer's ``withdrawing`` as the refund's hold, settled to the
    card by Stripe's word like any refund (released to the customer's available if
    Stripe refuses). One ledger transaction, ``refund:{id}:reversal``."""
    currency, amount = order.currency, refund.amount
    # This refund's shares are not set yet: the sum is of the earlier ones.
    before = await RefundRepository(session).reversed_amount(order.id)
    payee_share = proportional_part(amount, order.amount, escrow.payee_amount, before)
    fee_share = amount - payee_share
    covered, payee_available = await reverse_escrow_settlement(
        session,
        escrow,
        to=ledger_service.AccountRef.user(order.user_id, AccountKind.withdrawing, currency),
        amount=amount,
        payee_share=payee_share,
        fee_share=fee_share,
        cause_key=f"refund:{refund.id}:reversal",
        description=f"Refund {public_id(REFUND_PREFIX, refund.id)} reverses the "
        f"settlement of escrow esc_{escrow.id}",
        metadata={"refund_id": refund.id, "order_id": order.id},
    )
    if covered:
        log.warning(
            "refund %s: the payee holds %s of its %s %s share; the platform covers %s",
            refund.id,
            payee_available,
            payee_share,
            currency,
            covered,
        )
    refund.payee_share, refund.fee_share = payee_share, fee_share
    refund.platform_covered, refund.payee_coverable = covered, max(0, payee_available)
