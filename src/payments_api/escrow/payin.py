"""Job offers paid by card (purpose ``escrow``): the Checkout request creates the job's
escrow, and the payment lands in it directly when Stripe confirms it (never through the
wallet). With ``capture_method=manual`` the card is only authorized; a capture of less
than the hold makes the order what was paid."""

from __future__ import annotations

from typing import Any

from payments_api.auth import Principal
from payments_api.escrow import service as escrow_service
from payments_api.escrow.models import CaptureMethod, EscrowFunding
from payments_api.escrow.schemas import EscrowCreate
from payments_api.events.types import EventType
from payments_api.orders.errors import EscrowCheckoutIncomplete
from payments_api.orders.models import Order
from payments_api.orders.purposes import (
    BasePurpose,
    CheckoutLine,
    CheckoutRequest,
    PaidPayment,
    require_chosen_amount,
)
from payments_api.orders.schemas import CheckoutSessionCreate
from payments_api.problems import Forbidden
from payments_api.settings import Settings


def _manual_capture(order: Order) -> bool:
    return order.reference.get("capture_method") == CaptureMethod.manual.value


class EscrowPurpose(BasePurpose):
    name = "escrow"
    paid_event = EventType.order_paid

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        if not principal.has_role("customer"):
            raise Forbidden("Paying for a job needs the customer role.")
        # A job offer is chosen by the customer like a top-up, within the same limits.
        require_chosen_amount(body, settings, "A job payment")

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        """The escrow waits for the payment (``EscrowService.fund_from_payment``)."""
        body = request.body
        if body.payee_id is None or body.reference is None:
            raise EscrowCheckoutIncomplete("A job payment needs `payee_id` and `reference`.")
        assert body.amount is not None  # noqa: S101 - checked by check_checkout
        assert body.currency is not None  # noqa: S101
        escrow, _replayed = await escrow_service.EscrowService(
            request.session, request.settings
        ).create(
            request.user,
            EscrowCreate(
                payee_id=body.payee_id,
                amount=body.amount,
                currency=body.currency,
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
        return Order(
            user_id=request.user.id,
            purpose=self.name,
            channel="checkout_session",
            status="pending",
            amount=escrow.hold_amount,
            currency=escrow.currency,
            reference=reference,
        )

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
