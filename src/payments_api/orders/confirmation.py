"""Applies Stripe's verdict on a pay-in: the only code that credits a wallet.

What a paid order *means* belongs to its purpose (``orders/purposes.py``); this module
holds what every pay-in shares: finding the order from Stripe's ids, holding a paid
amount that differs from the order for review, the order's status, its events and
Stripe's processing fee.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import receive
from payments_api.ledger.stripe_fees import processing_fee, settled_fee
from payments_api.orders.models import Order
from payments_api.orders.purposes import PURPOSES, PaidPayment
from payments_api.orders.reads import ORDER_PREFIX, owner_event
from payments_api.orders.repository import OrderRepository
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)

PAYINS_NEEDING_REVIEW = Counter(
    "payments_payins_needing_review_total",
    "Paid pay-ins not credited because Stripe's amount or currency differs from the order",
    ["reason"],
)

PAYINS = Counter(
    "payments_payins_total",
    "Pay-ins that reached an outcome, by purpose and outcome (succeeded, failed, expired)",
    ["purpose", "outcome"],
)


async def post_payment(
    payment: PaidPayment,
    order: Order,
    *,
    destination: ledger_service.AccountRef,
    transaction_type: str,
) -> None:
    """Book a confirmed payment from Stripe's balance to ``destination``, once per
    PaymentIntent: the Checkout Session event and the PaymentIntent event of one payment
    can never both book it."""
    currency = order.currency
    await payment.ledger.post(
        ledger_service.NewTransaction(
            type=transaction_type,
            cause_type=CauseType.stripe_event,
            cause_key=f"stripe:payment:{payment.payment_intent_id}",
            description=f"Payment {public_id(ORDER_PREFIX, order.id)}",
            metadata={"order_id": order.id, "payment_intent": payment.payment_intent_id},
            postings=receive(
                payment.amount,
                into=destination,
                out_of=ledger_service.AccountRef.platform(AccountKind.stripe_balance, currency),
            ),
        )
    )


class PayInConfirmation:
    """Applies Stripe's verdict on a pay-in: the only code that credits a wallet."""

    def __init__(self, session: AsyncSession, stripe: StripeGateway, settings: Settings) -> None:
        self.session = session
        self.stripe = stripe
        self.settings = settings
        self.orders = OrderRepository(session)
        self.ledger = ledger_service.LedgerService(session)

    async def find(
        self,
        metadata: dict[str, Any] | None,
        *,
        checkout_session_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> Order | None:
        raw = (metadata or {}).get("order_id")
        order_id = int(raw) if isinstance(raw, str) and (raw.isascii() and raw.isdigit()) else None
        return await self.orders.by_stripe_ids(
            order_id=order_id,
            checkout_session_id=checkout_session_id,
            payment_intent_id=payment_intent_id,
        )

    async def succeed(
        self, order: Order, *, payment_intent_id: str, amount: int, currency: str
    ) -> None:
        """Credit the pay-in once. The cause key is the PaymentIntent id, so the
        Checkout Session event and the PaymentIntent event of one payment can never
        both credit."""
        if order.stripe_payment_intent_id is None:
            order.stripe_payment_intent_id = payment_intent_id
        if order.status == "needs_review":
            return  # already held for an operator; a redelivery changes nothing
        purpose = PURPOSES.get(order.purpose)
        partial_capture = (
            purpose.takes_partial_capture(order)
            and currency == order.currency
            and 0 < amount < order.amount
        )
        if partial_capture and order.status in ("pending", "requires_action"):
            # An authorization captured in part: the order is what was paid; Stripe
            # released the rest at the card.
            order.amount = amount
        mismatch = (
            "currency_mismatch"
            if currency != order.currency
            else "amount_mismatch"
            if amount != order.amount
            else None
        )
        if mismatch is not None:
            # Credit what was ordered or nothing: never what the event says. A paid
            # amount that differs (a tampered or misrouted session, a Stripe-side
            # change) waits for an operator; reconciliation shows the Stripe charge
            # with no ledger entry.
            order.status = "needs_review"
            order.review_reason = mismatch
            order.paid_amount = amount
            order.paid_currency = currency[:3]
            order.updated_at = utcnow()
            PAYINS_NEEDING_REVIEW.labels(mismatch).inc()
            log.warning(
                "pay-in differs from its order; not credited",
                extra={"order_id": order.id, "reason": mismatch},
            )
            return
        await purpose.on_paid(
            order,
            PaidPayment(
                session=self.session,
                settings=self.settings,
                ledger=self.ledger,
                payment_intent_id=payment_intent_id,
                amount=amount,
                currency=currency,
            ),
        )
        if order.status in ("pending", "requires_action", "failed", "expired"):
            # A late success after an expiry/failure still means the money arrived.
            # The paid event rides the statement that marks the order.
            await self.orders.mark_succeeded(
                order, utcnow(), lambda paid: owner_event(paid, purpose.paid_event, "paid")
            )
            PAYINS.labels(order.purpose, "succeeded").inc()
        else:
            order.updated_at = utcnow()

    async def record_fee(self, order: Order, charge_id: str) -> None:
        """Record Stripe's processing fee from the charge's balance transaction."""
        charge = await self.stripe.retrieve_charge_with_fee(charge_id)
        settled = settled_fee(charge.balance_transaction)
        if settled is None:
            return  # not settled yet or no fee; reconciliation catches it later
        transaction_id, fee, currency = settled
        await self.ledger.post(
            processing_fee(
                balance_transaction_id=transaction_id,
                fee=fee,
                currency=currency or order.currency,
                description=f"Stripe fee for {public_id(ORDER_PREFIX, order.id)}",
                metadata={"order_id": order.id, "charge": charge_id},
            )
        )
        order.processing_fee_amount = fee

    async def fail(self, order: Order, status: str, code: str) -> None:
        """Mark a pay-in failed or expired, unless Stripe already confirmed it."""
        if order.status not in ("pending", "requires_action"):
            return  # succeeded stays succeeded; a second failure changes nothing
        order.status = status
        order.failure_code = code[:64]
        order.updated_at = utcnow()
        PAYINS.labels(order.purpose, status).inc()
        await PURPOSES.get(order.purpose).on_failed(self.session, order)

    def action_url(self, order: Order, payment_intent_id: str) -> str | None:
        """Where the customer finishes a payment on-session: the frontend's page
        (``PAYMENTS_FINISH_PAYMENT_URL``), else the sandbox's payment page."""
        template = self.settings.finish_payment_url
        if template:
            return template.format(
                order_id=public_id(ORDER_PREFIX, order.id), payment_intent_id=payment_intent_id
            )
        if self.settings.sandbox:
            base = self.settings.public_base_url.rstrip("/")
            return f"{base}/sandbox/payment_intents/{payment_intent_id}"
        return None

    async def require_action(self, order: Order, *, payment_intent_id: str) -> None:
        """The bank wants the customer (3-D Secure): the top-up waits for them, with a
        link to finish it on-session, and the platform hears of it once."""
        if order.stripe_payment_intent_id is None:
            order.stripe_payment_intent_id = payment_intent_id
        if order.status != "pending":
            return  # already waiting, or decided
        order.status = "requires_action"
        order.action_url = self.action_url(order, payment_intent_id)
        order.updated_at = utcnow()
        await PURPOSES.get(order.purpose).on_requires_action(self.session, order)
