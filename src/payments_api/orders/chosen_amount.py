"""Purposes whose customer chooses the amount (a top-up, a tip or paid request, a job
offer): the Checkout request carries ``amount`` and ``currency``, checked against the
top-up limits, and the order is written pending for Checkout."""

from __future__ import annotations

from typing import Any, ClassVar

from payments_api.auth import Principal
from payments_api.orders.models import Order
from payments_api.orders.purposes import BasePurpose, CheckoutRequest, require_chosen_amount
from payments_api.orders.schemas import CheckoutSessionCreate
from payments_api.settings import Settings


class ChosenAmountPurpose(BasePurpose):
    chosen_as: ClassVar[str] = ""
    """The payment as a refusal names it ("A top-up needs `amount` and `currency`.")."""

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        require_chosen_amount(body, settings, self.chosen_as)

    @staticmethod
    def chosen_amount(request: CheckoutRequest) -> tuple[int, str]:
        """The request's ``amount`` and ``currency`` (present: ``check_checkout`` ran)."""
        amount, currency = request.body.amount, request.body.currency
        assert amount is not None  # noqa: S101 - checked by check_checkout
        assert currency is not None  # noqa: S101
        return amount, currency

    def pending_order(
        self, request: CheckoutRequest, amount: int, currency: str, reference: dict[str, Any]
    ) -> Order:
        """The order waiting for its Checkout Session to be paid."""
        return Order(
            user_id=request.user.id,
            purpose=self.name,
            channel="checkout_session",
            status="pending",
            amount=amount,
            currency=currency,
            reference=reference,
        )
