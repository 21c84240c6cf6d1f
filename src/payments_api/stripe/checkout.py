"""Checkout Sessions, PaymentIntents, charges and balance transactions."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import ChargeWithFee, CheckoutSession, PaymentIntent


class CheckoutCalls(GatewayBase):
    async def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> CheckoutSession:
        """Create a Checkout Session (``checkout_session:{order_id}`` keys make it once)."""
        session = await self._call(
            "checkout.sessions.create",
            lambda: self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
        )
        return self._typed("checkout.sessions.create", CheckoutSession, session)

    async def create_payment_intent(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> PaymentIntent:
        intent = await self._call(
            "payment_intents.create",
            lambda: self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
        )
        return self._typed("payment_intents.create", PaymentIntent, intent)

    async def retrieve_charge_with_fee(self, charge_id: str) -> ChargeWithFee:
        """A charge with its balance transaction expanded (Stripe's fee lives there)."""
        charge = await self._call(
            "charges.retrieve",
            lambda: self._client.v1.charges.retrieve_async(
                charge_id, params={"expand": ["balance_transaction"]}
            ),
        )
        return self._typed("charges.retrieve", ChargeWithFee, charge)

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        intent = await self._call(
            "payment_intents.retrieve",
            lambda: self._client.v1.payment_intents.retrieve_async(payment_intent_id),
        )
        return self._typed("payment_intents.retrieve", PaymentIntent, intent)

    async def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int, idempotency_key: str
    ) -> PaymentIntent:
        """Capture (all or part of) an authorized PaymentIntent; Stripe releases the
        uncaptured rest. Keys ``escrow_capture:{escrow_id}:{round}``."""
        intent = await self._call(
            "payment_intents.capture",
            lambda: self._client.v1.payment_intents.capture_async(
                payment_intent_id,
                params={"amount_to_capture": amount_to_capture},
                options=self._options(idempotency_key),
            ),
        )
        return self._typed("payment_intents.capture", PaymentIntent, intent)

    async def cancel_payment_intent(
        self, payment_intent_id: str, *, idempotency_key: str
    ) -> PaymentIntent:
        """Cancel a PaymentIntent: an uncaptured authorization is released at the card.
        Keys ``escrow_release:{escrow_id}``."""
        intent = await self._call(
            "payment_intents.cancel",
            lambda: self._client.v1.payment_intents.cancel_async(
                payment_intent_id,
                params={"cancellation_reason": "requested_by_customer"},
                options=self._options(idempotency_key),
            ),
        )
        return self._typed("payment_intents.cancel", PaymentIntent, intent)
